"""Shared fixtures. Zoo models must be fetched first (`faceswap-pl models fetch --all`, done by `make test`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


def need(name: str) -> Path:
    """Directory of a fetched zoo entry; fails (never skips) with the fetch command if missing."""
    from faceswap_pl import zoo

    return zoo.require(name)


def read_rgb(path: Path) -> np.ndarray:
    """An image file as an HxWx3 uint8 RGB array."""
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert image is not None, f"cannot read {path}"
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


@pytest.fixture(scope="session")
def media():
    """Callable: media file name -> path of the fetched file."""
    from faceswap_pl import zoo

    return zoo.media_path


@pytest.fixture(scope="session")
def randomize_batchnorm():
    """Callable ``(module, seed=0) -> module``: seeded random BatchNorm weights, biases and running stats.

    A fresh module's BatchNorms are the identity (1, 0, 0, 1); randomising them makes a checkpoint
    round trip prove that every statistic was really loaded.
    """
    import torch
    from torch import nn

    def apply(module, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for m in module.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    n = m.num_features
                    m.weight.copy_(0.5 + torch.rand(n, generator=g))
                    m.bias.copy_(0.1 * torch.randn(n, generator=g))
                    m.running_mean.copy_(0.1 * torch.randn(n, generator=g))
                    m.running_var.copy_(0.5 + torch.rand(n, generator=g))
                    m.num_batches_tracked.fill_(7)
        return module

    return apply
