"""Helpers for frozen pretrained networks: eval mode, no parameter gradients, input gradients kept."""

from __future__ import annotations

import torch
from torch import nn


class FrozenModule(nn.Module):
    """Base of every pretrained adapter.

    Once :meth:`freeze` has run, parameters never require grad and ``train()`` keeps the network in
    eval mode (BatchNorm statistics and dropout stay fixed), while gradients still flow to the input.
    Frozen modules are rebuilt from the zoo, never stored in training checkpoints.
    """

    _frozen = False

    def freeze(self) -> "FrozenModule":
        self.requires_grad_(False)
        super().train(False)
        self._frozen = True
        return self

    def train(self, mode: bool = True) -> "FrozenModule":
        return super().train(False if self._frozen else mode)


def to_unit_range(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> [0, 1]."""
    return (x + 1.0) * 0.5


def check_image_batch(x: torch.Tensor, who: str) -> None:
    """Raise a clear error unless ``x`` is (N, 3, H, W)."""
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"{who} expects RGB images of shape (N, 3, H, W) in [-1, 1], got {tuple(x.shape)}")
