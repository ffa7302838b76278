"""Batched point-set geometry for the metrics: similarity (Umeyama) alignment and rotation angles.

Point sets are (N, K, D) or (K, D) tensors with D = 2 or 3, any unit (the results of the alignment
are in the unit of ``dst``; angles are in degrees). The fits run in float64 and come back in the
input's dtype. Reflections are never fitted: every rotation returned has determinant +1.
"""

from __future__ import annotations

import torch

from faceswap_pl.errors import FaceSwapError


class MetricInputError(FaceSwapError, ValueError):
    """A tensor given to a metric or the evaluator has the wrong shape, dtype or value range."""


def check_points(name: str, x: torch.Tensor, dims: tuple[int, ...] = (2, 3), num_points: int | None = None,
                 batched: bool | None = None) -> None:
    """Raise :class:`MetricInputError` naming ``name`` unless ``x`` is a finite float point set.

    Args:
        name: the argument's name, used in the message.
        x: (N, K, D) or (K, D) points.
        dims: allowed point dimensions D.
        num_points: required K, or None for any.
        batched: True: must be (N, K, D); False: must be (K, D); None: either.
    """
    want_ndim = {True: (3,), False: (2,), None: (2, 3)}[batched]
    k = "K" if num_points is None else str(num_points)
    d = "/".join(str(v) for v in dims)
    shape = f"(N, {k}, {d})" if batched else f"({k}, {d})" if batched is False else f"(N, {k}, {d}) or ({k}, {d})"
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise MetricInputError(f"{name} must be a float tensor of points {shape}; got {type(x).__name__}"
                               f"{'' if not isinstance(x, torch.Tensor) else ' of dtype ' + str(x.dtype)}.")
    if x.ndim not in want_ndim or x.shape[-1] not in dims or (num_points is not None and x.shape[-2] != num_points):
        raise MetricInputError(f"{name} must be points of shape {shape}; got {tuple(x.shape)}.")
    if not torch.isfinite(x).all():
        raise MetricInputError(f"{name} contains NaN or infinite values; pass finite landmark coordinates.")


def check_pair(name_a: str, a: torch.Tensor, name_b: str, b: torch.Tensor, **kwargs) -> None:
    """:func:`check_points` on both, and the two shapes must be equal."""
    check_points(name_a, a, **kwargs)
    check_points(name_b, b, **kwargs)
    if a.shape != b.shape:
        raise MetricInputError(f"{name_a} {tuple(a.shape)} and {name_b} {tuple(b.shape)} must have the same shape.")


def _proper_svd_rotation(cov: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Closest proper rotation to a (N, D, D) cross-covariance ``sum_k dst_k src_k^T``.

    Returns ``(rotation (N, D, D), signed singular values (N, D))``: ``rotation = U diag(signs) V^T``
    with the last sign -1 where ``U V^T`` would be a reflection (Umeyama 1991 / Kabsch).
    """
    u, singular, vh = torch.linalg.svd(cov)
    signs = torch.ones_like(singular)
    signs[..., -1] = torch.where(torch.linalg.det(u) * torch.linalg.det(vh) < 0, -1.0, 1.0)
    return u @ (signs.unsqueeze(-1) * vh), singular * signs


def _batched64(name: str, x: torch.Tensor) -> torch.Tensor:
    check_points(name, x)
    x = x.to(torch.float64)
    return x if x.ndim == 3 else x.unsqueeze(0)


def similarity_transform(src: torch.Tensor, dst: torch.Tensor,
                         rotation_only: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Least-squares similarity ``dst ~= scale * R @ src + t`` per sample (Umeyama), batched.

    Args:
        src: (N, K, D) or (K, D) points, D = 2 or 3.
        dst: the corresponding points, same shape.
        rotation_only: fit rotation and translation only (scale fixed at 1, a rigid fit).
    Returns:
        ``(scale (N,), R (N, D, D), t (N, D))`` in float64 (N = 1 for unbatched input); ``R`` is a
        proper rotation (det +1), never a reflection.
    """
    check_pair("src", src, "dst", dst)
    src, dst = _batched64("src", src), _batched64("dst", dst)
    mu_s, mu_d = src.mean(-2, keepdim=True), dst.mean(-2, keepdim=True)
    cs, cd = src - mu_s, dst - mu_d
    k = src.shape[-2]
    rotation, signed_singular = _proper_svd_rotation(cd.transpose(-1, -2) @ cs / k)
    if rotation_only:
        scale = torch.ones(src.shape[0], dtype=src.dtype, device=src.device)
    else:
        variance = (cs**2).sum((-1, -2)) / k
        scale = signed_singular.sum(-1) / variance.clamp_min(torch.finfo(src.dtype).tiny)
    translation = mu_d.squeeze(-2) - scale[:, None] * (rotation @ mu_s.transpose(-1, -2)).squeeze(-1)
    return scale, rotation, translation


def apply_similarity(points: torch.Tensor, scale: torch.Tensor, rotation: torch.Tensor,
                     translation: torch.Tensor) -> torch.Tensor:
    """``scale * R @ p + t`` for (N, K, D) points with the outputs of :func:`similarity_transform`."""
    return scale[:, None, None] * points @ rotation.transpose(-1, -2) + translation[:, None, :]


def similarity_align(src: torch.Tensor, dst: torch.Tensor, rotation_only: bool = False,
                     subset: list[int] | tuple[int, ...] | None = None) -> torch.Tensor:
    """``src`` mapped onto ``dst`` by the best similarity (rotation, uniform scale, translation).

    Args:
        src: (N, K, D) or (K, D) points, D = 2 or 3.
        dst: (N, K, D) or (K, D) target points, same shape.
        rotation_only: fit rotation and translation only (no scaling).
        subset: indices of the K points the transform is fitted on (default all); it is applied to
            all K points.
    Returns:
        The aligned ``src``, same shape and dtype as ``src``, in ``dst``'s unit.
    """
    check_pair("src", src, "dst", dst)
    fit_src, fit_dst = (src, dst) if subset is None else (src[..., list(subset), :], dst[..., list(subset), :])
    scale, rotation, translation = similarity_transform(fit_src, fit_dst, rotation_only)
    aligned = apply_similarity(_batched64("src", src), scale, rotation, translation)
    return (aligned if src.ndim == 3 else aligned[0]).to(src.dtype)


def kabsch_rotation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The proper rotation (N, D, D), float64, best taking centred points ``a`` onto centred ``b``.

    Scale normalisation of either set does not change it. Where the best orthogonal map would be a
    reflection (e.g. ``b`` a mirror image of ``a``), the closest proper rotation is returned.
    """
    check_pair("a", a, "b", b)
    a, b = _batched64("a", a), _batched64("b", b)
    a = a - a.mean(-2, keepdim=True)
    b = b - b.mean(-2, keepdim=True)
    a = a / a.pow(2).sum((-1, -2), keepdim=True).sqrt().clamp_min(torch.finfo(a.dtype).tiny)
    b = b / b.pow(2).sum((-1, -2), keepdim=True).sqrt().clamp_min(torch.finfo(b.dtype).tiny)
    return _proper_svd_rotation(b.transpose(-1, -2) @ a)[0]


def rotation_matrix_angle_deg(rotation: torch.Tensor) -> torch.Tensor:
    """Angle in degrees, in [0, 180], of (..., D, D) rotation matrices (D = 2 or 3).

    Uses ``atan2(|sin|, cos)`` from the skew and trace parts, accurate near 0 and 180 degrees alike.
    """
    r = rotation
    if r.shape[-1] == 2:
        sin, cos = (r[..., 1, 0] - r[..., 0, 1]) / 2, (r[..., 0, 0] + r[..., 1, 1]) / 2
        return torch.rad2deg(torch.atan2(sin.abs(), cos))
    skew = torch.stack([r[..., 2, 1] - r[..., 1, 2], r[..., 0, 2] - r[..., 2, 0], r[..., 1, 0] - r[..., 0, 1]], -1)
    trace = r[..., 0, 0] + r[..., 1, 1] + r[..., 2, 2]
    return torch.rad2deg(torch.atan2(torch.linalg.norm(skew, dim=-1) / 2, (trace - 1) / 2))


def rotation_angle_deg(a3d: torch.Tensor, b3d: torch.Tensor) -> torch.Tensor:
    """Angle (degrees, in [0, 180]) of the best rotation taking ``a``'s points onto ``b``'s.

    Both sets are centred and scaled to unit RMS size, then the rotation is fitted by Kabsch with
    the reflection fix (:func:`kabsch_rotation`).

    Args:
        a3d: (N, K, D) or (K, D) points, D = 3 (or 2: an in-plane angle).
        b3d: corresponding points, same shape.
    Returns:
        (N,) angles in degrees, or a 0-d tensor for unbatched input; input dtype.
    """
    angle = rotation_matrix_angle_deg(kabsch_rotation(a3d, b3d))
    return (angle if a3d.ndim == 3 else angle[0]).to(a3d.dtype)


__all__ = ["MetricInputError", "check_points", "check_pair", "similarity_transform", "apply_similarity",
           "similarity_align", "kabsch_rotation", "rotation_matrix_angle_deg", "rotation_angle_deg"]
