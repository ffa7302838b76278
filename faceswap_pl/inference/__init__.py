"""Inference-time tools: face detection (boxes + 5 keypoints) and the swap pipeline built on it.

``faceswap_pl.models.detectors`` holds the :class:`~faceswap_pl.models.detectors.FaceDetector`
interface, the YuNet (zoo) and insightface SCRFD (user model pack) detectors and
:func:`~faceswap_pl.models.detectors.create_detector`.
"""
