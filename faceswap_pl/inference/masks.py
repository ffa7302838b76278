"""Blend masks for pasting a swapped crop back: landmark hull, eroded or dilated, border zeroed, blurred.

All masks live in the aligned crop (``size`` x ``size``, float32 in [0, 1]) and are built from the
face-oval silhouette of the MediaPipe mesh (unit crop coordinates). Sizes are given in pixels of a
224-px crop — the crop GHOST tuned its numbers on — and scaled to ``size``.

GHOST's adaptive rule compares where the jaw of the swap and of the target lie: when the swapped
face is narrower than the target's (positive offset) the mask shrinks and softens more, so the
target's own jaw line stays; when it is wider, the mask grows so the whole swapped face shows.
offset = max(sum over the image-left jaw of (x_swap - x_target), sum over the image-right jaw of
(x_target - x_swap)), in 224-crop pixels:

===============  ==========================  =====================
offset           morphology (square side)    Gaussian sigmas (x, y)
===============  ==========================  =====================
> 6              erode 15                    (15, 10)
> 3              erode 10                    (10, 8)
< -3             dilate 5                    (5, 10)
otherwise        erode 5                     (5, 5)
===============  ==========================  =====================

The ``hull`` mode always uses the last row. GHOST also pushes its eyebrow landmarks up before taking
the hull; the mesh silhouette already runs over the forehead, so no push is applied here.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from faceswap_pl.models.landmarks.topology import MESH_FACE_OVAL

REFERENCE_SIZE = 224
#: jaw points of the mesh silhouette, image-left and image-right (mirror pairs), for the adaptive rule
LEFT_JAW = (93, 132, 58)
RIGHT_JAW = (323, 361, 288)


@dataclass(frozen=True)
class MaskRule:
    """Morphology and blur of a mask, in 224-crop pixels: ``grow`` is the side of the square erosion (< 0) or
    dilation (> 0) kernel, ``blur_x`` / ``blur_y`` the Gaussian sigmas (as GHOST's numbers are)."""

    grow: int
    blur_x: int
    blur_y: int


def adaptive_rule(offset: float) -> MaskRule:
    """GHOST's table (module docstring) for a jaw offset in 224-crop pixels."""
    if offset > 6:
        return MaskRule(-15, 15, 10)
    if offset > 3:
        return MaskRule(-10, 10, 8)
    if offset < -3:
        return MaskRule(5, 5, 10)
    return MaskRule(-5, 5, 5)


DEFAULT_RULE = adaptive_rule(0.0)


def jaw_offset(swap_points: np.ndarray, target_points: np.ndarray) -> float:
    """The adaptive rule's offset from (468, 2) mesh points of swap and target in unit crop coordinates."""
    swap = np.asarray(swap_points, dtype=np.float64)[:, 0] * REFERENCE_SIZE
    target = np.asarray(target_points, dtype=np.float64)[:, 0] * REFERENCE_SIZE
    left = float(np.sum(swap[list(LEFT_JAW)] - target[list(LEFT_JAW)]))
    right = float(np.sum(target[list(RIGHT_JAW)] - swap[list(RIGHT_JAW)]))
    return max(left, right)


def _odd(value: float) -> int:
    size = max(1, int(round(value)))
    return size if size % 2 == 1 else size + 1


def hull_mask(points: np.ndarray, size: int, rule: MaskRule = DEFAULT_RULE) -> np.ndarray:
    """The blend mask of one crop.

    Args:
        points: (468, 2) mesh points (unit crop coordinates) of the face the mask covers.
        size: crop side in pixels.
        rule: morphology (square kernel side) and blur (Gaussian sigmas) in 224-crop pixels.
    Returns:
        (size, size) float32 in [0, 1]: 1 inside the (eroded / dilated) face-oval hull, a Gaussian edge, and 0 on
        a border of twice the vertical sigma so the mask never reaches the crop's edge.
    """
    scale = size / REFERENCE_SIZE
    oval = np.asarray(points, dtype=np.float64)[list(MESH_FACE_OVAL)] * size
    hull = cv2.convexHull(np.round(oval).astype(np.int32))
    mask = np.zeros((size, size), np.uint8)
    cv2.fillConvexPoly(mask, hull, 255)
    grow = int(round(abs(rule.grow) * scale))
    if grow > 1:  # a square kernel of that side, as GHOST's: the edge moves by about half of it
        kernel = np.ones((grow, grow), np.uint8)
        mask = cv2.dilate(mask, kernel) if rule.grow > 0 else cv2.erode(mask, kernel)
    border = int(round(2 * rule.blur_y * scale))
    if border > 0:
        mask[:border], mask[-border:], mask[:, :border], mask[:, -border:] = 0, 0, 0, 0
    mask = mask.astype(np.float32) / 255.0
    blurred = cv2.GaussianBlur(mask, (0, 0), sigmaX=max(rule.blur_x * scale, 0.1), sigmaY=max(rule.blur_y * scale, 0.1))
    return np.clip(blurred, 0.0, 1.0)  # the kernel's float sum can exceed 1 by an ulp


def full_mask(size: int) -> np.ndarray:
    """``--mask none``: the whole aligned crop."""
    return np.ones((size, size), np.float32)
