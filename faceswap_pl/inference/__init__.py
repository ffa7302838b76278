"""Inference-time tools: face detection (boxes + 5 keypoints) and the swap pipeline built on it.

``faceswap_pl.inference.detect`` holds the :class:`~faceswap_pl.inference.detect.FaceDetector`
interface, the YuNet (zoo) and insightface SCRFD (user model pack) detectors and
:func:`~faceswap_pl.inference.detect.create_detector`.
"""
