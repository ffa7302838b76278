"""Adaptive Attentional Denormalization (AAD): layer, residual block and the AEI-Net generator.

Layouts, key names, numerics and initialisation follow GHOST (sber-swap ``network/AADLayer.py`` and
``AADGenerator``), so a GHOST ``G_*.pth`` generator loads into :class:`AADGenerator` and gives the
same outputs. Generalised over the number of levels (image size) and a width multiplier; see
:mod:`faceswap_pl.models.sizing`.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from faceswap_pl.errors import InputShapeError, ModelOptionError
from faceswap_pl.models.sizing import check_positive_int, check_width, level_resolutions, scaled
from faceswap_pl.models.weight_init import ghost_weight_init

BLOCK_COUNT_HINT = "GHOST published 1, 2 and 3; 2 is FaceShifter's block"


class AADLayer(nn.Module):
    """One AAD layer: blend attribute- and identity-modulated activations with a learned mask.

    ``h = InstanceNorm(h_in)`` (no affine), ``A = gamma_att(z_att) * h + beta_att(z_att)`` (1x1 convs),
    ``I = gamma_id(e) * h + beta_id(e)`` (Linear on the identity vector),
    ``M = sigmoid(conv_h(h))`` (1x1 conv to one channel), ``out = (1 - M) * A + M * I``.

    Submodule names are GHOST's: ``conv1`` = gamma_att, ``conv2`` = beta_att, ``fc1`` = gamma_id,
    ``fc2`` = beta_id, ``conv_h`` = mask; all with biases.

    Shape:
        ``h_in (N, C, H, W)``, ``z_attr (N, C_att, H, W)``, ``z_id (N, D)`` -> ``(N, C, H, W)``.
    """

    def __init__(self, channels: int, attribute_channels: int, id_dim: int) -> None:
        super().__init__()
        self.norm = nn.InstanceNorm2d(channels, affine=False)
        self.conv1 = nn.Conv2d(attribute_channels, channels, kernel_size=1)
        self.conv2 = nn.Conv2d(attribute_channels, channels, kernel_size=1)
        self.fc1 = nn.Linear(id_dim, channels)
        self.fc2 = nn.Linear(id_dim, channels)
        self.conv_h = nn.Conv2d(channels, 1, kernel_size=1)

    def forward(self, h_in: torch.Tensor, z_attr: torch.Tensor, z_id: torch.Tensor) -> torch.Tensor:
        h = self.norm(h_in)
        # ``a * b + c`` with the sum written into the product (which no backward needs): the same
        # values, one full-size temporary less per sum
        attr = _add_into(self.conv1(z_attr) * h, self.conv2(z_attr))
        ident = _add_into(self.fc1(z_id)[:, :, None, None] * h, self.fc2(z_id)[:, :, None, None])
        mask = torch.sigmoid(self.conv_h(h))
        return _add_into((1 - mask) * attr, mask * ident)


def _add_into(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a + b``, computed in place in ``a`` (a fresh product) when that gives the same tensor."""
    if torch.result_type(a, b) == a.dtype and torch.broadcast_shapes(a.shape, b.shape) == a.shape:
        return a.add_(b)
    return a + b


class AADConvChain(nn.ModuleList):
    """``n x [AADLayer -> ReLU -> 3x3 conv (no bias)]`` held flat, as GHOST's ``AddBlocksSequential``
    (keys ``{3i}.conv1.weight`` ... for the AAD layers, ``{3i+2}.weight`` for the convs).

    Built with :meth:`build`: every AAD layer works on ``in_channels``; the convs keep
    ``in_channels`` except the last, which maps to ``out_channels``.

    Shape: ``h (N, C_in, H, W)``, ``z_attr (N, C_att, H, W)``, ``z_id (N, D)`` -> ``(N, C_out, H, W)``.
    """

    @classmethod
    def build(cls, in_channels: int, out_channels: int, attribute_channels: int, id_dim: int,
              num_blocks: int) -> "AADConvChain":
        """A chain of ``num_blocks`` AAD steps from ``in_channels`` to ``out_channels``."""
        modules: list[nn.Module] = []
        for i in range(num_blocks):
            conv_out = out_channels if i == num_blocks - 1 else in_channels
            modules += [
                AADLayer(in_channels, attribute_channels, id_dim),
                nn.ReLU(inplace=True),
                nn.Conv2d(in_channels, conv_out, kernel_size=3, stride=1, padding=1, bias=False),
            ]
        return cls(modules)

    # Recompute each ``relu(AAD(h))`` in the backward pass instead of keeping its intermediates
    # (set by :meth:`AADGenerator.set_recompute`): the same values and gradients, less memory.
    recompute: bool = False

    def forward(self, h: torch.Tensor, z_attr: torch.Tensor, z_id: torch.Tensor) -> torch.Tensor:
        for i in range(0, len(self), 3):
            aad, relu, conv = self[i], self[i + 1], self[i + 2]
            if self.recompute and torch.is_grad_enabled():
                h = conv(checkpoint(_aad_relu, aad, relu, h, z_attr, z_id, use_reentrant=False,
                                    preserve_rng_state=False))
            else:
                h = conv(relu(aad(h, z_attr, z_id)))
        return h


def _aad_relu(aad: AADLayer, relu: nn.Module, h: torch.Tensor, z_attr: torch.Tensor, z_id: torch.Tensor) -> torch.Tensor:
    return relu(aad(h, z_attr, z_id))


class AADResBlock(nn.Module):
    """AAD residual block: ``add_blocks(h) + shortcut(h)``.

    ``add_blocks`` is an :class:`AADConvChain` of ``num_blocks`` steps; the shortcut is the identity
    when the channel count is kept, else ``last_add_block`` = one ``AAD -> ReLU -> 3x3 conv`` step.

    Shape: ``h (N, C_in, H, W)``, ``z_attr (N, C_att, H, W)``, ``z_id (N, D)`` -> ``(N, C_out, H, W)``.
    """

    def __init__(self, in_channels: int, out_channels: int, attribute_channels: int, id_dim: int,
                 num_blocks: int = 2) -> None:
        super().__init__()
        check_positive_int(num_blocks, "num_aad_blocks", BLOCK_COUNT_HINT)
        self.add_blocks = AADConvChain.build(in_channels, out_channels, attribute_channels, id_dim, num_blocks)
        self.last_add_block = (
            AADConvChain.build(in_channels, out_channels, attribute_channels, id_dim, 1)
            if in_channels != out_channels else None
        )

    def forward(self, h: torch.Tensor, z_attr: torch.Tensor, z_id: torch.Tensor) -> torch.Tensor:
        shortcut = h if self.last_add_block is None else self.last_add_block(h, z_attr, z_id)
        return self.add_blocks(h, z_attr, z_id) + shortcut


def generator_channels(resolution: int) -> int:
    """Base channels of the generator block at ``resolution`` px (1024 up to 16 px, then halving:
    512 at 32, 64 at 256)."""
    return min(1024, 16384 // resolution)


class AADGenerator(nn.Module):
    """AEI-Net's AAD generator: identity vector + multi-level attributes -> image in [-1, 1].

    ``up1`` (ConvTranspose, kernel 2, with bias) turns the identity vector into a 2x2 map; then one
    :class:`AADResBlock` per level (``AADBlk1..AADBlk{L}``) with a bilinear x2 (align_corners=True)
    between blocks; ``tanh`` at the end. Block ``k`` works on ``generator_channels(r) * width``
    channels at ``r = 2**k`` px and outputs the next block's channels (the last outputs 3).
    Init: Xavier normal convs, N(0, 0.001) Linear weights with zero bias (GHOST's).

    Args:
        attribute_channels: the encoder's ``channels`` (coarsest first); their count L sets the
            output size ``2**L``.
        id_dim: identity embedding size (512 ArcFace as GHOST; 128 SFace).
        num_aad_blocks: AAD steps per residual block (GHOST: 1, 2 or 3).
        width: channel multiplier (1.0 = GHOST).
    Shape:
        ``z_attr[k] (N, attribute_channels[k], 2**(k+1), 2**(k+1))``, ``z_id (N, id_dim)`` ->
        ``(N, 3, 2**L, 2**L)``.
    """

    def __init__(self, attribute_channels: Sequence[int], id_dim: int = 512, num_aad_blocks: int = 2,
                 width: float = 1.0) -> None:
        super().__init__()
        check_positive_int(num_aad_blocks, "num_aad_blocks", BLOCK_COUNT_HINT)
        check_positive_int(id_dim, "id_dim", "512 for ArcFace as GHOST, 128 for SFace")
        width = check_width(width)
        if len(attribute_channels) < 1:
            raise InputShapeError("AADGenerator needs at least one attribute level.")
        self.attribute_channels = list(attribute_channels)
        self.id_dim = id_dim
        self.num_aad_blocks = num_aad_blocks
        resolutions = level_resolutions(len(self.attribute_channels))
        channels = [scaled(generator_channels(r), width) for r in resolutions] + [3]

        self.up1 = nn.ConvTranspose2d(id_dim, channels[0], kernel_size=2, stride=1, padding=0)
        for k, att in enumerate(self.attribute_channels):
            self.add_module(f"AADBlk{k + 1}", AADResBlock(channels[k], channels[k + 1], att, id_dim, num_aad_blocks))
        self.apply(ghost_weight_init)

    @property
    def num_levels(self) -> int:
        return len(self.attribute_channels)

    def set_recompute(self, levels: int) -> None:
        """Recompute the AAD layers (norm, modulation, mask, blend, ReLU; not the 3x3 convs) of the
        ``levels`` highest-resolution blocks in the backward pass instead of storing their
        intermediates (activation checkpointing). Values and gradients are unchanged; each AAD layer
        then keeps 2 instead of 6 activation tensors of its size, for about one more forward pass
        of those layers. 0 turns it off; ``num_levels`` covers every block."""
        if levels < 0:
            raise ModelOptionError(f"recompute levels must be >= 0, got {levels}")
        for k in range(self.num_levels):
            block = getattr(self, f"AADBlk{k + 1}")
            for chain in (block.add_blocks, block.last_add_block):
                if chain is not None:
                    chain.recompute = k >= self.num_levels - levels

    def forward(self, z_attr: Sequence[torch.Tensor], z_id: torch.Tensor) -> torch.Tensor:
        if len(z_attr) != self.num_levels:
            raise InputShapeError(f"AADGenerator expects {self.num_levels} attribute maps but got {len(z_attr)}.")
        if z_id.ndim != 2 or z_id.shape[1] != self.id_dim:
            raise InputShapeError(
                f"AADGenerator expects identity embeddings of shape (N, {self.id_dim}) but got "
                f"{tuple(z_id.shape)}; build the model with id_dim={z_id.shape[-1]} to match the identity encoder."
            )
        x = self.up1(z_id[:, :, None, None])
        for k in range(self.num_levels):
            x = getattr(self, f"AADBlk{k + 1}")(x, z_attr[k], z_id)
            if k < self.num_levels - 1:
                x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)
        return torch.tanh(x)
