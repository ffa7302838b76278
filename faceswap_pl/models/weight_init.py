"""GHOST's weight initialisation for the AEI-Net encoder (unet / linknet) and the AAD generator."""

from __future__ import annotations

from torch import nn


def ghost_weight_init(module: nn.Module) -> None:
    """Initialise one module as GHOST does; use as ``net.apply(ghost_weight_init)``.

    Conv2d and ConvTranspose2d weights: Xavier normal (their biases keep PyTorch's default).
    Linear: weights N(0, 0.001), biases zero, so the identity modulation starts near zero.
    Other modules (BatchNorm, ...) keep their defaults.
    """
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, 0.0, 0.001)
        nn.init.zeros_(module.bias)
    elif isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.xavier_normal_(module.weight)
