"""The face-detector interface (:class:`FaceDetector`), its result (:class:`Face`) and its registry.

Every detector takes an RGB uint8 image (H, W, 3) of any size and returns :class:`Face` records in
image pixels, sorted by score (highest first). Keypoints come in ArcFace template order — left eye,
right eye, nose tip, left mouth corner, right mouth corner, where "left" means the image-left side
(the subject's right) — so :func:`faceswap_pl.alignment.align_face` can use them directly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from faceswap_pl.registry import Registry


@dataclass(eq=False)
class Face:
    """One detected face in image pixels.

    Attributes:
        box: (4,) float32 ``x1, y1, x2, y2`` (top-left and bottom-right corners, pixels).
        score: detection confidence in [0, 1].
        keypoints: (5, 2) float32 ``(x, y)`` pixels in ArcFace order: left eye, right eye, nose,
            left mouth corner, right mouth corner ("left" = image-left).
    """

    box: np.ndarray
    score: float
    keypoints: np.ndarray = field(repr=False)

    def __post_init__(self) -> None:
        self.box = np.asarray(self.box, dtype=np.float32).reshape(4)
        self.keypoints = np.asarray(self.keypoints, dtype=np.float32).reshape(5, 2)
        self.score = float(self.score)

    @property
    def width(self) -> float:
        return float(self.box[2] - self.box[0])

    @property
    def height(self) -> float:
        return float(self.box[3] - self.box[1])

    @property
    def area(self) -> float:
        return max(self.width, 0.0) * max(self.height, 0.0)


def check_image(image: np.ndarray) -> np.ndarray:
    """Validate an RGB uint8 (H, W, 3) image; returns it C-contiguous."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"detectors expect an RGB image of shape (H, W, 3), got {image.shape}")
    if image.dtype != np.uint8:
        raise ValueError(f"detectors expect a uint8 image, got {image.dtype}")
    return np.ascontiguousarray(image)


class FaceDetector:
    """Interface: ``detect(image_rgb (H, W, 3) uint8) -> list[Face]`` sorted by score, descending."""

    def detect(self, image_rgb: np.ndarray) -> list[Face]:  # pragma: no cover - interface
        raise NotImplementedError

    def __call__(self, image_rgb: np.ndarray) -> list[Face]:
        return self.detect(image_rgb)


def by_score(faces: list[Face]) -> list[Face]:
    return sorted(faces, key=lambda f: f.score, reverse=True)


#: the face detectors by name (implementations register themselves; see the package docstring)
DETECTORS = Registry("face detector")
register_detector = DETECTORS.register
