"""Per-sample face-swap distances on landmarks: pure, batched functions returning (N,) tensors.

Inputs are the outputs of the frozen landmark models for aligned crops: MediaPipe mesh points
(N, 468, 3) or (N, 468, 2) and MediaPipe iris points (N, 152, 2), all in unit crop coordinates
(:mod:`faceswap_pl.models.landmarks.mediapipe`; index sets in :mod:`faceswap_pl.models.landmarks.topology`). Distances are normalised by an inter-ocular distance (IOD,
same unit), so the numbers are fractions of the eye distance and do not depend on the crop size.
The fits run in float64; results come back in the input's dtype.
"""

from __future__ import annotations

import torch

from faceswap_pl.metrics.geometry import (
    MetricInputError,
    check_pair,
    check_points,
    kabsch_rotation,
    rotation_matrix_angle_deg,
    similarity_align,
)
from faceswap_pl.models.landmarks.topology import (
    IRIS_CENTRE_INDICES,
    IRIS_EYE_SET,
    IRIS_OUTPUT_POINTS,
    MESH_EXPRESSION,
    MESH_EYES,
    MESH_FACE_OVAL,
    MESH_POINTS,
    MESH_STABLE,
)


def _eps(x: torch.Tensor) -> float:
    return torch.finfo(x.dtype).eps


def inter_ocular_distance(points: torch.Tensor, eyes=MESH_EYES) -> torch.Tensor:
    """Distance between the two eye centres, each the mean of its eye's points.

    Args:
        points: (..., K, D) landmarks.
        eyes: two index sequences (image-left eye, image-right eye); a single index each also works.
    Returns:
        (...) distances, in the points' unit.
    """
    left = points[..., list(eyes[0]), :].mean(-2) if not isinstance(eyes[0], int) else points[..., eyes[0], :]
    right = points[..., list(eyes[1]), :].mean(-2) if not isinstance(eyes[1], int) else points[..., eyes[1], :]
    return torch.linalg.norm(right - left, dim=-1)


def expression_distance(swap3d: torch.Tensor, target3d: torch.Tensor) -> torch.Tensor:
    """Expression error per sample, in units of the target's IOD.

    The swap mesh is similarity-aligned (3-D rotation, scale, translation) onto the target mesh on the
    near-rigid points ``MESH_STABLE``, so head pose and face size do not count; the value is the mean
    point distance over ``MESH_EXPRESSION`` (lips, eyelids, brows) divided by the target's IOD (the
    distance between the means of the two ``MESH_EYES`` contours).

    Args:
        swap3d: (N, 468, 3) mesh points of the swapped faces (2-D points (N, 468, 2) also work).
        target3d: (N, 468, D) mesh points of the targets.
    Returns:
        (N,) errors, 0 when the expressions are equal (lower is better).
    """
    check_pair("swap3d", swap3d, "target3d", target3d, num_points=MESH_POINTS, batched=True)
    aligned = similarity_align(swap3d.double(), target3d.double(), subset=MESH_STABLE)
    index = list(MESH_EXPRESSION)
    distance = torch.linalg.norm(aligned[:, index] - target3d.double()[:, index], dim=-1).mean(-1)
    iod = inter_ocular_distance(target3d.double())
    return (distance / iod.clamp_min(_eps(iod))).to(swap3d.dtype)


def eye_distance(swap_iris: torch.Tensor, target_iris: torch.Tensor) -> torch.Tensor:
    """Eye (gaze and blink) error per sample, in units of the target's IOD.

    Mean distance over ``IRIS_EYE_SET`` (both eyelid contours, iris outputs 0-15 / 76-91, and both
    iris centres 71 / 147) in the aligned crops, no re-alignment, divided by the target's IOD (the
    distance between its iris centres 71 and 147).

    Args:
        swap_iris: (N, 152, 2) iris-model points of the swapped faces, unit crop coordinates.
        target_iris: (N, 152, 2) iris-model points of the targets.
    Returns:
        (N,) errors (lower is better).
    """
    check_pair("swap_iris", swap_iris, "target_iris", target_iris, dims=(2, 3), num_points=IRIS_OUTPUT_POINTS,
               batched=True)
    swap, target = swap_iris[..., :2].double(), target_iris[..., :2].double()
    index = list(IRIS_EYE_SET)
    distance = torch.linalg.norm(swap[:, index] - target[:, index], dim=-1).mean(-1)
    iod = inter_ocular_distance(target, IRIS_CENTRE_INDICES)
    return (distance / iod.clamp_min(_eps(iod))).to(swap_iris.dtype)


def pose_distance_deg(swap3d: torch.Tensor, target3d: torch.Tensor) -> torch.Tensor:
    """Head-pose error per sample: the angle in degrees of the rotation between the two meshes.

    Kabsch on the centred, scale-normalised ``MESH_STABLE`` points (so expression barely moves it),
    as :func:`~faceswap_pl.metrics.geometry.rotation_angle_deg`.

    Args:
        swap3d: (N, 468, 3) mesh points of the swapped faces.
        target3d: (N, 468, 3) mesh points of the targets.
    Returns:
        (N,) angles in degrees, in [0, 180] (lower is better).
    """
    check_pair("swap3d", swap3d, "target3d", target3d, dims=(3,), num_points=MESH_POINTS, batched=True)
    index = list(MESH_STABLE)
    return rotation_matrix_angle_deg(kabsch_rotation(swap3d[:, index], target3d[:, index])).to(swap3d.dtype)


def shape_distance(swap: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
    """Face-shape error per sample: the swap's face silhouette against the SOURCE's, in source IODs.

    The 36 face-oval points ``MESH_FACE_OVAL`` (x, y only) of the swap are similarity-aligned in 2-D
    onto the source's; the value is their mean distance divided by the source's IOD (between the
    means of the two ``MESH_EYES`` contours, x and y).

    Args:
        swap: (N, 468, 2) or (N, 468, 3) mesh points of the swapped faces.
        source: (N, 468, 2 or 3) mesh points of the identity sources.
    Returns:
        (N,) errors, 0 for equal silhouettes up to a similarity (lower is better).
    """
    check_points("swap", swap, num_points=MESH_POINTS, batched=True)
    check_points("source", source, num_points=MESH_POINTS, batched=True)
    if swap.shape[0] != source.shape[0]:
        raise MetricInputError(f"swap ({swap.shape[0]} faces) and source ({source.shape[0]} faces) must pair up.")
    index = list(MESH_FACE_OVAL)
    swap_oval, source_oval = swap[:, index, :2].double(), source[:, index, :2].double()
    aligned = similarity_align(swap_oval, source_oval)
    distance = torch.linalg.norm(aligned - source_oval, dim=-1).mean(-1)
    iod = inter_ocular_distance(source[..., :2].double())
    return (distance / iod.clamp_min(_eps(iod))).to(swap.dtype)


def jitter(swap_seq: torch.Tensor, target_seq: torch.Tensor, eye_indices=None) -> torch.Tensor:
    """Temporal jitter of a swapped sequence against its target sequence.

    With ``a[t] = x[t+1] - 2 x[t] + x[t-1]`` the per-point acceleration (t = 1 .. T-2), the value is
    the mean over t and the K points of ``||a_swap[t, k] - a_target[t, k]||``: motion the target does
    not have. Normalisation: with ``eye_indices`` (two index sequences, image-left eye and
    image-right eye) it is divided by the target's inter-ocular distance averaged over the T frames
    (a fraction of the IOD per frame squared); without, it is raw, in the points' unit per frame
    squared. A still target with an alternating shake ``x + (-1)^t d`` gives ``4 |d|`` (raw).

    Args:
        swap_seq: (T, K, D) landmark sequence of the swap, or (B, T, K, D) for B sequences; T >= 3.
        target_seq: the target's sequence, same shape.
        eye_indices: optional ``(left_indices, right_indices)`` into the K points.
    Returns:
        A 0-d tensor for one sequence, (B,) for a batch (lower is better).
    """
    for name, seq in (("swap_seq", swap_seq), ("target_seq", target_seq)):
        if not isinstance(seq, torch.Tensor) or not seq.is_floating_point() or seq.ndim not in (3, 4):
            raise MetricInputError(f"{name} must be a float landmark sequence (T, K, D) or (B, T, K, D); got "
                                   f"{tuple(seq.shape) if isinstance(seq, torch.Tensor) else type(seq).__name__}.")
    if swap_seq.shape != target_seq.shape:
        raise MetricInputError(f"swap_seq {tuple(swap_seq.shape)} and target_seq {tuple(target_seq.shape)} "
                               "must have the same shape.")
    if swap_seq.shape[-3] < 3:
        raise MetricInputError(f"swap_seq has {swap_seq.shape[-3]} frames; jitter needs at least 3.")
    swap, target = swap_seq.double(), target_seq.double()
    accel_swap = swap[..., 2:, :, :] - 2 * swap[..., 1:-1, :, :] + swap[..., :-2, :, :]
    accel_target = target[..., 2:, :, :] - 2 * target[..., 1:-1, :, :] + target[..., :-2, :, :]
    value = torch.linalg.norm(accel_swap - accel_target, dim=-1).mean((-1, -2))
    if eye_indices is not None:
        iod = inter_ocular_distance(target, eye_indices).mean(-1)
        value = value / iod.clamp_min(_eps(iod))
    return value.to(swap_seq.dtype)


__all__ = [
    "inter_ocular_distance", "expression_distance", "eye_distance", "pose_distance_deg",
    "shape_distance", "jitter",
]
