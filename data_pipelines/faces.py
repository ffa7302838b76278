"""Per-image face work: decode, detect, pick, filter, align and JPEG-encode one face crop.

A face becomes a crop when it passes, in this order: the detector score (``min_score``), the face
size (shorter side of the detector box, in source pixels, ``min_face``) and the sharpness of the
aligned crop (variance of the Laplacian of the crop resized to 128 px, so the threshold does not
depend on the crop size; ``max_blur``: crops below it are "too blurry"). Crops are JPEG-encoded
once (quality 95) and those bytes go into the shard unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from faceswap_pl.alignment import align_face, transform_points
from faceswap_pl.imageio import decode_image, encode_jpeg
from faceswap_pl.models.detectors import create_detector

# reasons in skipped.json
UNREADABLE_IMAGE = "unreadable image"
UNREADABLE_VIDEO = "unreadable video"
NO_FACE = "no face"
LOW_SCORE = "face score below min_score"
TOO_SMALL = "face too small"
TOO_BLURRY = "too blurry"
TRACK_TOO_SHORT = "track too short"
UNSUPPORTED = "unsupported file type"

SHARPNESS_SIZE = 128
JPEG_QUALITY = 95


@dataclass(frozen=True)
class FaceSettings:
    """How faces are detected, filtered and cropped (part of the cache key of every unit)."""

    size: int = 256
    detector: str = "yunet"
    min_face: float = 64.0
    min_score: float = 0.8
    max_blur: float = 40.0


@dataclass
class Crop:
    """One aligned face: JPEG bytes, its 5 keypoints in crop pixels, the detector score, where it came from."""

    jpeg: bytes
    landmarks: np.ndarray
    score: float
    source: str
    frame_index: int | None = None


_DETECTORS: dict[str, object] = {}


def get_detector(name: str, min_score: float):
    """The process-wide detector for ``name`` (created once per worker process).

    Its own threshold is at most 0.5, below ``min_score``, so that faces with a low score are seen
    (and reported as such) rather than silently missing.
    """
    key = f"{name}@{min_score}"
    if key not in _DETECTORS:
        _DETECTORS[key] = create_detector(name, score_threshold=min(0.5, float(min_score)))
    return _DETECTORS[key]


def readable_image(path: Path) -> np.ndarray | None:
    """An image file as RGB uint8 (H, W, 3), or None when it is empty, unreadable or under 8 px (skipped inputs)."""
    try:
        data = Path(path).read_bytes()
    except OSError:
        return None
    image = decode_image(data)
    if image is None or image.ndim != 3 or min(image.shape[:2]) < 8:
        return None
    return image


def detect_faces(detector, image: np.ndarray) -> list:
    """All faces in ``image``; when none is found, retry once on the image with a black border.

    The retry finds faces that fill the whole picture (tightly cropped or already-aligned datasets),
    which detectors trained on scenes tend to miss. Coordinates are always in ``image`` pixels.
    """
    faces = detector.detect(image)
    if faces:
        return faces
    pad = max(image.shape[:2]) // 4
    padded = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(0, 0, 0))
    faces = detector.detect(padded)
    for face in faces:
        face.box = face.box - pad
        face.keypoints = face.keypoints - pad
    return faces


def face_size(face) -> float:
    """Shorter side of the detector box, in image pixels."""
    return float(min(face.width, face.height))


def main_face(faces: list):
    """The face a single-person image shows: the largest area times score."""
    return max(faces, key=lambda f: f.area * f.score)


def sharpness(crop: np.ndarray) -> float:
    """Variance of the Laplacian of the grey crop resized to 128 px (higher = sharper)."""
    grey = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)
    if grey.shape[0] != SHARPNESS_SIZE:
        grey = cv2.resize(grey, (SHARPNESS_SIZE, SHARPNESS_SIZE), interpolation=cv2.INTER_AREA)
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def crop_face(image: np.ndarray, face, settings: FaceSettings, source: str,
              frame_index: int | None = None) -> tuple[Crop | None, str | None]:
    """Filter and align one detected face: ``(crop, None)`` when it passes, else ``(None, reason)``."""
    if face.score < settings.min_score:
        return None, LOW_SCORE
    if face_size(face) < settings.min_face:
        return None, TOO_SMALL
    aligned, matrix = align_face(image, face.keypoints, settings.size)
    if sharpness(aligned) < settings.max_blur:
        return None, TOO_BLURRY
    landmarks = transform_points(face.keypoints, matrix).astype(np.float32)
    return Crop(encode_jpeg(aligned, JPEG_QUALITY), landmarks, face.score, source, frame_index), None
