"""GHOST / FaceShifter losses as pure functions on tensors.

Discriminator outputs are lists with one score map per scale (see
:class:`~faceswap_pl.models.discriminator.MultiscaleDiscriminator`); every adversarial loss sums
over scales the mean over each map, as GHOST does.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F


def hinge_d_loss(real_scores: Sequence[torch.Tensor], fake_scores: Sequence[torch.Tensor]) -> torch.Tensor:
    """Discriminator hinge loss ``0.5 * sum_k [mean relu(1 - D_k(real)) + mean relu(1 + D_k(fake))]``.

    Shape: each list holds one (N, 1, h_k, w_k) map per scale; returns a scalar.
    """
    real = sum(F.relu(1.0 - s).mean() for s in real_scores)
    fake = sum(F.relu(1.0 + s).mean() for s in fake_scores)
    return 0.5 * (real + fake)


def hinge_g_loss(fake_scores: Sequence[torch.Tensor]) -> torch.Tensor:
    """Generator adversarial loss ``sum_k mean relu(1 - D_k(Y))`` (GHOST's L_adv)."""
    return sum(F.relu(1.0 - s).mean() for s in fake_scores)


def identity_loss(source_embedding: torch.Tensor, swap_embedding: torch.Tensor) -> torch.Tensor:
    """``mean(1 - cos(e_s, e_y))`` over the batch. Shape: (N, D), (N, D) -> scalar."""
    return (1.0 - F.cosine_similarity(source_embedding, swap_embedding, dim=-1)).mean()


def attribute_loss(target_attributes: Sequence[torch.Tensor], swap_attributes: Sequence[torch.Tensor]) -> torch.Tensor:
    """``0.5 * sum_k mean ||z_k(X_t) - z_k(Y)||^2`` over the attribute levels (GHOST's L_attr).

    Each level's squared error is averaged over its elements, then over the batch.
    """
    if len(target_attributes) != len(swap_attributes):
        raise ValueError(f"attribute lists differ in length: {len(target_attributes)} vs {len(swap_attributes)}")
    return 0.5 * sum((zt - zy).pow(2).flatten(1).mean(1).mean() for zt, zy in zip(target_attributes, swap_attributes))


def reconstruction_loss(swap: torch.Tensor, target: torch.Tensor, same_identity: torch.Tensor) -> torch.Tensor:
    """``0.5 * mean ||Y - X_t||^2`` over the rows where source and target are the same person.

    Args:
        swap, target: (N, 3, S, S).
        same_identity: (N,) bool or 0/1.
    Returns:
        scalar; exactly zero (with a gradient path) when no row is same-identity, never NaN.
    """
    weights = same_identity.to(swap.dtype).reshape(-1)
    per_row = 0.5 * (swap - target).pow(2).flatten(1).mean(1)
    return (per_row * weights).sum() / weights.sum().clamp_min(1.0)


def eye_loss(swap_eyes: torch.Tensor, target_eyes: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of eye features (landmark points or pupil heatmaps) of swap and target."""
    if swap_eyes.shape != target_eyes.shape:
        raise ValueError(f"eye features differ in shape: {tuple(swap_eyes.shape)} vs {tuple(target_eyes.shape)}")
    return (swap_eyes - target_eyes).pow(2).mean()
