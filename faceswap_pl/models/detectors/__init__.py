"""Face detectors: one interface (:mod:`.base`), one registry, one module per detector.

Every detector maps an RGB uint8 image (H, W, 3) to :class:`~.base.Face` records (box, score, the 5 ArcFace
keypoints in image pixels), highest score first.

Names (:func:`create_detector`):
    ``yunet``               OpenCV zoo YuNet 2023mar through ``cv2.FaceDetectorYN`` (zoo)
    ``insightface:<dir>``   SCRFD (``det_*.onnx``) from a local insightface model pack directory

Example:
    >>> detector_names()
    ['yunet', 'insightface:<dir>']
"""

from __future__ import annotations

from faceswap_pl.models.detectors.base import DETECTORS, Face, FaceDetector, register_detector
from faceswap_pl.models.detectors.insightface import InsightFaceDetector
from faceswap_pl.models.detectors.yunet import YUNET_FILE, YuNetDetector, convert_yunet

__all__ = ["DETECTORS", "YUNET_FILE", "Face", "FaceDetector", "InsightFaceDetector", "YuNetDetector", "convert_yunet",
           "create_detector", "detector_names", "register_detector"]


def detector_names(pattern: str = "*") -> list[str]:
    """The registered names matching ``pattern`` (shell-style), ``insightface:<dir>`` included."""
    return DETECTORS.names(pattern)


def create_detector(name: str, **kwargs) -> FaceDetector:
    """A face detector by name (see the package docstring); kwargs go to its constructor.

    Raises:
        UnknownNameError: ``name`` is not registered (the message lists the valid names).
    """
    return DETECTORS.create(name, **kwargs)
