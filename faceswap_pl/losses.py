"""GHOST / FaceShifter losses as pure functions on tensors.

Discriminator outputs are lists with one score map per scale (see
:class:`~faceswap_pl.models.discriminator.MultiscaleDiscriminator`); every adversarial loss sums
over scales the per-row mean over each map, and averages over the rows, in GHOST's order of operations
(so that float rounding, too, follows GHOST's train.py).

Batch averages take an ``eps`` added to the row count, which is how GHOST's train.py writes them:
``sum_rows(x) / (rows + eps)`` with ``eps = 1e-4`` for the adversarial terms (:data:`GHOST_ADV_EPS`) and
``sum_rows(x * same) / (same.sum() + 1e-6)`` for reconstruction (:data:`GHOST_REC_EPS`). ``eps = 0``
gives the plain mean (and, for reconstruction, the mean over the same-person rows, 0 without any).
"""

from __future__ import annotations

from typing import Literal, Sequence

import torch
import torch.nn.functional as F

#: GHOST's denominators: ``diff_person.sum() + 1e-4`` (adversarial), ``same_person.sum() + 1e-6`` (reconstruction)
GHOST_ADV_EPS = 1e-4
GHOST_REC_EPS = 1e-6

EYE_REDUCTIONS = ("sum", "mean")


def _batch_average(per_row: torch.Tensor, eps: float) -> torch.Tensor:
    """``sum(per_row) / (rows + eps)``, the count a float tensor as GHOST's; the plain mean when ``eps == 0``."""
    if eps == 0:
        return per_row.mean()
    return per_row.sum() / (per_row.new_tensor(float(per_row.shape[0])) + eps)


def _hinge_rows(score: torch.Tensor, real: bool) -> torch.Tensor:
    """Per-row mean of ``relu(1 - D)`` (real) or ``relu(1 + D)`` (fake) over (C, H, W): (N,)."""
    hinge = torch.relu(1 - score) if real else torch.relu(score + 1)
    return hinge.mean(dim=list(range(1, score.ndim)))


def hinge_d_term(scores: Sequence[torch.Tensor], real: bool, eps: float = 0.0) -> torch.Tensor:
    """One half of the discriminator loss: ``sum_k avg_rows(mean_{C,H,W} relu(1 -/+ D_k))`` (real / fake).

    Rows are averaged per scale as ``sum / (rows + eps)`` (GHOST: ``eps = 1e-4``; 0: the plain mean).
    Shape: one (N, 1, h_k, w_k) map per scale -> scalar (0 for an empty list).
    """
    total = 0.0
    for score in scores:
        total = total + _batch_average(_hinge_rows(score, real), eps)
    return torch.as_tensor(total) if not torch.is_tensor(total) else total


def hinge_d_loss(real_scores: Sequence[torch.Tensor], fake_scores: Sequence[torch.Tensor],
                 eps: float = 0.0) -> torch.Tensor:
    """Discriminator hinge loss ``0.5 * (real term + fake term)`` (:func:`hinge_d_term`; GHOST's L_D).

    Shape: each list holds one (N, 1, h_k, w_k) map per scale (either list may be empty); returns a scalar.
    """
    fake = hinge_d_term(fake_scores, real=False, eps=eps)
    real = hinge_d_term(real_scores, real=True, eps=eps)
    return 0.5 * (real + fake)


def hinge_g_loss(fake_scores: Sequence[torch.Tensor], eps: float = 0.0) -> torch.Tensor:
    """Generator adversarial loss (GHOST's L_adv): ``avg_rows(sum_k mean_{C,H,W} relu(1 - D_k(Y)))``.

    Per row the scales are summed first, then the rows averaged as ``sum / (rows + eps)``.
    """
    per_row = 0.0
    for score in fake_scores:
        per_row = per_row + _hinge_rows(score, real=True)
    return _batch_average(per_row, eps)


def identity_loss(source_embedding: torch.Tensor, swap_embedding: torch.Tensor) -> torch.Tensor:
    """``mean(1 - cos(e_s, e_y))`` over the batch; raw or unit vectors alike. Shape: (N, D), (N, D) -> scalar."""
    return (1.0 - F.cosine_similarity(source_embedding, swap_embedding, dim=-1)).mean()


def attribute_loss(target_attributes: Sequence[torch.Tensor], swap_attributes: Sequence[torch.Tensor]) -> torch.Tensor:
    """``0.5 * sum_k mean ||z_k(X_t) - z_k(Y)||^2`` over the attribute levels (GHOST's L_attr).

    Each level's squared error is averaged over its elements, then over the batch.
    """
    if len(target_attributes) != len(swap_attributes):
        raise ValueError(f"attribute lists differ in length: {len(target_attributes)} vs {len(swap_attributes)}")
    return 0.5 * sum((zt - zy).pow(2).flatten(1).mean(1).mean() for zt, zy in zip(target_attributes, swap_attributes))


def reconstruction_loss(swap: torch.Tensor, target: torch.Tensor, same_identity: torch.Tensor,
                        eps: float = 0.0) -> torch.Tensor:
    """``sum_rows(0.5 * mean ||Y - X_t||^2 * same) / (same.sum() + eps)`` (GHOST's L_rec with ``eps = 1e-6``).

    Args:
        swap, target: (N, 3, S, S).
        same_identity: (N,) bool or 0/1.
        eps: added to the count of same-person rows; 0 divides by ``max(count, 1)``.
    Returns:
        scalar; exactly zero (with a gradient path) when no row is same-identity, never NaN.
    """
    weights = same_identity.to(swap.dtype).reshape(-1)
    per_row = 0.5 * (swap - target).pow(2).flatten(1).mean(1)
    count = weights.sum() + eps if eps > 0 else weights.sum().clamp_min(1.0)
    return torch.sum(per_row * weights) / count


def eye_loss(swap_eyes: torch.Tensor, target_eyes: torch.Tensor,
             reduction: Literal["sum", "mean"] = "sum") -> torch.Tensor:
    """Squared difference of eye features (pupil heatmaps or eye points) of swap and target.

    The features (N, F, ...) hold the image-left eye in the first half of dim 1 and the other eye in the
    second (AWing: the two pupil heatmaps (N, 2, 64, 64); MediaPipe: (N, 2K, 2) points).

    Args:
        reduction: ``sum``: GHOST's ``MSE(left) + MSE(right)``, the sum of the two per-eye means;
            ``mean``: one mean over both eyes (half of ``sum``).
    """
    if swap_eyes.shape != target_eyes.shape:
        raise ValueError(f"eye features differ in shape: {tuple(swap_eyes.shape)} vs {tuple(target_eyes.shape)}")
    if reduction not in EYE_REDUCTIONS:
        raise ValueError(f"eye-loss reduction must be one of {EYE_REDUCTIONS}, got {reduction!r}")
    if reduction == "mean":
        return (swap_eyes - target_eyes).pow(2).mean()
    if swap_eyes.ndim < 2 or swap_eyes.shape[1] % 2:
        raise ValueError(f"eye features need an even dim 1 (left eye, then right eye), got {tuple(swap_eyes.shape)}")
    (swap_left, swap_right), (target_left, target_right) = swap_eyes.chunk(2, dim=1), target_eyes.chunk(2, dim=1)
    # GHOST: l2_loss(Xt_heatmap_left, Y_heatmap_left) + l2_loss(Xt_heatmap_right, Y_heatmap_right)
    return F.mse_loss(target_left, swap_left) + F.mse_loss(target_right, swap_right)
