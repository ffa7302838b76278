"""Face alignment maths: the ArcFace 5-point template, similarity estimation, and warps.

Conventions: points are (x, y) in pixels; an affine matrix ``M`` (2x3) maps source-image pixels to
crop pixels (``crop = M @ [x, y, 1]``), as OpenCV's ``warpAffine`` expects. The template for a crop
of size ``S`` is the 112-px ArcFace template scaled by ``S / 112``, so resizing an aligned crop from
one size to another is the same as aligning at the other size.

Two templates (:data:`TEMPLATES`): ``arcface``, the single 5-point ArcFace template (the shards, the
recognizers), and ``ghost``, the alignment GHOST's inference uses (insightface 0.2.1's
``estimate_norm(kps, 224, mode="None")``): the keypoints are fitted to each of five pose templates
(left profile, left, frontal, right, right profile) and the fit with the smallest summed point
distance is kept (:func:`ghost_alignment`).
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F

# insightface arcface_torch template for 112x112 crops: left eye, right eye, nose, left mouth, right mouth
ARCFACE_TEMPLATE_112 = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float64,
)


# insightface 0.2.1's five pose templates for 112-px crops (same point order), GHOST's alignment
GHOST_TEMPLATES_112 = np.array([
    [[51.642, 50.115], [57.617, 49.990], [35.740, 69.007], [51.157, 89.050], [57.025, 89.702]],  # left profile
    [[45.031, 50.118], [65.568, 50.872], [39.677, 68.111], [45.177, 86.190], [64.246, 86.758]],  # left
    [[39.730, 51.138], [72.270, 51.138], [56.000, 68.493], [42.463, 87.010], [69.537, 87.010]],  # frontal
    [[46.845, 50.872], [67.382, 50.118], [72.737, 68.111], [48.167, 86.758], [67.236, 86.190]],  # right
    [[54.796, 49.990], [60.771, 50.115], [76.673, 69.007], [55.388, 89.702], [61.257, 89.050]],  # right profile
], dtype=np.float32).astype(np.float64)  # the float32 values insightface fits to

TEMPLATES = ("arcface", "ghost")


def arcface_template(size: int) -> np.ndarray:
    """The 5-point template (5, 2) for a square crop of ``size`` pixels."""
    if size <= 0:
        raise ValueError(f"crop size must be positive, got {size}")
    return ARCFACE_TEMPLATE_112 * (size / 112.0)


def estimate_similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity transform (Umeyama) mapping ``src`` points onto ``dst``.

    Args:
        src: (K, 2) points in the source image.
        dst: (K, 2) corresponding points in the destination.
    Returns:
        (2, 3) float64 matrix ``M`` with ``dst ~= M @ [src, 1]``.
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or src.shape[0] < 2:
        raise ValueError(f"need two (K>=2, 2) point arrays of equal shape, got {src.shape} and {dst.shape}")
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s_c, d_c = src - mu_s, dst - mu_d
    cov = d_c.T @ s_c / len(src)
    u, sig, vt = np.linalg.svd(cov)
    fix = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        fix[1, 1] = -1
    rot = u @ fix @ vt
    var_s = (s_c**2).sum() / len(src)
    scale = (sig * np.diag(fix)).sum() / var_s
    m = np.zeros((2, 3))
    m[:, :2] = scale * rot
    m[:, 2] = mu_d - scale * rot @ mu_s
    return m


def ghost_alignment(keypoints: np.ndarray, size: int = 224) -> tuple[np.ndarray, int]:
    """GHOST's alignment: the best of the five pose templates scaled to ``size``.

    Each template is fitted by a least-squares similarity; the one whose fitted keypoints lie closest to it
    (sum over the 5 points of the Euclidean distance) wins, the first on a tie.

    Returns:
        ``(M, index)``: the (2, 3) image -> crop matrix and the template's index (0 left profile ... 4 right profile).
    """
    points = np.asarray(keypoints, dtype=np.float64).reshape(5, 2)
    best, best_index, best_error = None, -1, np.inf
    for index, template in enumerate(GHOST_TEMPLATES_112 * (size / 112.0)):
        m = estimate_similarity(points, template)
        error = np.sqrt(((transform_points(points, m) - template) ** 2).sum(1)).sum()
        if error < best_error:
            best, best_index, best_error = m, index, error
    return best, best_index


def alignment_matrix(keypoints: np.ndarray, size: int, template: str = "arcface") -> np.ndarray:
    """Matrix (2, 3) taking an image with 5 ``keypoints`` (5, 2) to the aligned ``size`` crop on ``template``."""
    if template == "ghost":
        return ghost_alignment(keypoints, size)[0]
    if template != "arcface":
        raise ValueError(f"unknown alignment template {template!r}; choose one of {TEMPLATES}")
    return estimate_similarity(np.asarray(keypoints, dtype=np.float64).reshape(5, 2), arcface_template(size))


def invert_affine(m: np.ndarray) -> np.ndarray:
    """Inverse of a (2, 3) affine matrix (crop pixels back to image pixels, for paste-back)."""
    full = np.vstack([np.asarray(m, dtype=np.float64), [0.0, 0.0, 1.0]])
    return np.linalg.inv(full)[:2]


def transform_points(points: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Apply a (2, 3) affine to (..., 2) points."""
    points = np.asarray(points, dtype=np.float64)
    return points @ np.asarray(m)[:, :2].T + np.asarray(m)[:, 2]


def align_face(image: np.ndarray, keypoints: np.ndarray, size: int,
               template: str = "arcface") -> tuple[np.ndarray, np.ndarray]:
    """Crop an aligned face from an HxWx3 uint8 image; returns (crop, M image->crop).

    Outside the image the ``arcface`` crop reflects the border; the ``ghost`` crop is black there, as GHOST's.
    """
    m = alignment_matrix(keypoints, size, template)
    border = cv2.BORDER_CONSTANT if template == "ghost" else cv2.BORDER_REFLECT
    crop = cv2.warpAffine(image, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=border, borderValue=0)
    return crop, m


def _pixel_to_normalised(size_hw: tuple[int, int], device, dtype) -> torch.Tensor:
    """3x3 matrix mapping pixel coords (pixel centres at integer + 0.5 edges) to [-1, 1] (align_corners=False)."""
    h, w = size_hw
    return torch.tensor([[2.0 / w, 0.0, -1.0], [0.0, 2.0 / h, -1.0], [0.0, 0.0, 1.0]], device=device, dtype=dtype)


def warp_affine(x: torch.Tensor, m: torch.Tensor, out_size: tuple[int, int] | int,
                padding_mode: str = "zeros") -> torch.Tensor:
    """Differentiable ``cv2.warpAffine`` for NCHW tensors.

    Args:
        x: (N, C, H, W) images.
        m: (N, 2, 3) or (2, 3) matrices mapping input pixels to output pixels (OpenCV convention,
            pixel centres at integer coordinates).
        out_size: output (H, W) or one int for a square.
    Returns:
        (N, C, H_out, W_out), bilinear; gradients reach ``x`` (and ``m``).
    """
    if x.ndim != 4:
        raise ValueError(f"warp_affine expects (N, C, H, W), got shape {tuple(x.shape)}")
    out_hw = (out_size, out_size) if isinstance(out_size, int) else tuple(out_size)
    m = torch.as_tensor(m, dtype=x.dtype, device=x.device)
    if m.ndim == 2:
        m = m.expand(x.shape[0], 2, 3)
    n = x.shape[0]
    bottom = torch.tensor([0.0, 0.0, 1.0], dtype=x.dtype, device=x.device).expand(n, 1, 3)
    full = torch.cat([m, bottom], dim=1)
    # OpenCV pixel centres are integers; shift to the half-pixel convention of align_corners=False
    shift = torch.tensor([[1.0, 0.0, 0.5], [0.0, 1.0, 0.5], [0.0, 0.0, 1.0]], dtype=x.dtype, device=x.device)
    unshift = torch.tensor([[1.0, 0.0, -0.5], [0.0, 1.0, -0.5], [0.0, 0.0, 1.0]], dtype=x.dtype, device=x.device)
    full = shift @ full @ unshift
    to_in = _pixel_to_normalised(tuple(x.shape[-2:]), x.device, x.dtype)
    to_out = _pixel_to_normalised(out_hw, x.device, x.dtype)
    # grid_sample needs output-normalised -> input-normalised
    theta = to_in @ torch.linalg.inv(full) @ torch.linalg.inv(to_out)
    grid = F.affine_grid(theta[:, :2], [n, x.shape[1], *out_hw], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode=padding_mode, align_corners=False)


def resize_aligned(x: torch.Tensor, size: int) -> torch.Tensor:
    """Re-align an aligned NCHW crop to another crop size (template scales with size): a resize."""
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=x.shape[-1] > size)
