"""Images for people: model tensors to uint8, labelled grids of swaps, PNG files."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch

from faceswap_pl.errors import FaceSwapError


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(N, 3, S, S) RGB in [-1, 1] -> (N, S, S, 3) uint8 RGB (values outside [-1, 1] are clipped)."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise FaceSwapError(f"Expected images of shape (N, 3, S, S), got {tuple(images.shape)}.")
    scaled = (images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5
    return scaled.round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def image_grid(columns: Sequence[torch.Tensor], titles: Sequence[str] = (), row_labels: Sequence[str] = (),
               gap: int = 2) -> np.ndarray:
    """One row per sample, one column per tensor: e.g. ``[source, target, swap]``.

    Args:
        columns: tensors of equal shape (N, 3, S, S) in [-1, 1].
        titles: optional column titles drawn in a header strip.
        row_labels: optional text drawn in each row's first tile (e.g. a per-pair score).
        gap: white pixels between tiles.
    Returns:
        (H, W, 3) uint8 RGB.
    """
    if not columns:
        raise FaceSwapError("image_grid needs at least one column of images.")
    tiles = [to_uint8(column) for column in columns]
    if len({t.shape for t in tiles}) != 1:
        raise FaceSwapError(f"image_grid columns differ in shape: {[t.shape for t in tiles]}.")
    n, size = tiles[0].shape[0], tiles[0].shape[1]
    header = 16 if titles else 0
    height = header + n * size + (n + 1) * gap
    width = len(tiles) * size + (len(tiles) + 1) * gap
    grid = np.full((height, width, 3), 255, np.uint8)
    scale = max(size / 256, 0.3)
    for c, column in enumerate(tiles):
        x = gap + c * (size + gap)
        if c < len(titles):
            cv2.putText(grid, titles[c], (x + 2, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
        for r in range(n):
            y = header + gap + r * (size + gap)
            grid[y:y + size, x:x + size] = column[r]
            if c == 0 and r < len(row_labels):
                cv2.putText(grid, row_labels[r], (x + 2, y + size - 4), cv2.FONT_HERSHEY_SIMPLEX,
                            scale, (255, 255, 0), 1, cv2.LINE_AA)
    return grid


def write_png(path: str | Path, rgb: np.ndarray) -> Path:
    """Write an (H, W, 3) uint8 RGB array as PNG, creating the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
        raise FaceSwapError(f"Could not write {path}; check that the folder is writable.")
    return path


def face_square(image: np.ndarray, box, side: int = 256) -> np.ndarray:
    """A square of twice the face box's size around its centre (black beyond the image), resized to ``side`` pixels."""
    x0, y0, x1, y1 = (float(v) for v in box)
    scale = side / (2 * max(x1 - x0, y1 - y0, 1.0))
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    matrix = np.array([[scale, 0, side / 2 - scale * cx], [0, scale, side / 2 - scale * cy]])
    return cv2.warpAffine(image, matrix, (side, side), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_CONSTANT)
