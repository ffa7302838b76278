"""ESRGAN's Residual-in-Residual Dense Block network (RRDBNet) as a plain, trainable torch module.

Configurable width, growth, depth and power-of-two scale; parameter names follow BasicSR, so a
BasicSR/Real-ESRGAN ``RRDBNet`` state dict with the same sizes loads as it is.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from faceswap_pl.models.restoration.base import LRELU_SLOPE

#: Residual scaling of every dense block and every RRDB.
RES_SCALE = 0.2


class ResidualDenseBlock(nn.Module):
    """Five densely connected 3x3 convolutions with a scaled residual.

    ``conv_k`` sees the concatenation of the block input and the outputs of ``conv_1..conv_{k-1}``;
    ``conv_1..conv_4`` are followed by LeakyReLU(0.2). Output: ``x + 0.2 * conv5(...)``.

    Shapes: (N, num_feat, H, W) -> (N, num_feat, H, W).
    """

    def __init__(self, num_feat: int = 64, num_grow: int = 32) -> None:
        super().__init__()
        for k in range(1, 6):
            in_ch = num_feat + (k - 1) * num_grow
            out_ch = num_grow if k < 5 else num_feat
            setattr(self, f"conv{k}", nn.Conv2d(in_ch, out_ch, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [x]
        for k in range(1, 5):
            conv = getattr(self, f"conv{k}")
            feats.append(F.leaky_relu(conv(torch.cat(feats, 1)), LRELU_SLOPE))
        return x + RES_SCALE * self.conv5(torch.cat(feats, 1))


class RRDB(nn.Module):
    """Residual-in-Residual Dense Block: three dense blocks and a scaled outer residual.

    Shapes: (N, num_feat, H, W) -> (N, num_feat, H, W).
    """

    def __init__(self, num_feat: int = 64, num_grow: int = 32) -> None:
        super().__init__()
        self.rdb1 = ResidualDenseBlock(num_feat, num_grow)
        self.rdb2 = ResidualDenseBlock(num_feat, num_grow)
        self.rdb3 = ResidualDenseBlock(num_feat, num_grow)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + RES_SCALE * self.rdb3(self.rdb2(self.rdb1(x)))


class RRDBNet(nn.Module):
    """ESRGAN / Real-ESRGAN generator.

    ``conv_first`` -> ``num_blocks`` RRDBs -> ``conv_body`` (+ long skip) -> ``log2(scale)`` times
    (nearest x2 upsample, ``conv_upK``, LeakyReLU) -> ``conv_hr`` + LeakyReLU -> ``conv_last``.

    The network is range-agnostic; the Real-ESRGAN weights expect RGB in [0, 1]. For scale 4 the
    parameter names equal BasicSR's ``RRDBNet(num_in_ch=3, num_out_ch=3, scale=4)``. (BasicSR's
    scale-2 / scale-1 variants pixel-unshuffle the input instead and are a different layout.)

    Args:
        num_in_ch / num_out_ch: image channels in and out.
        num_feat: trunk width (64 for Real-ESRGAN).
        num_grow: growth channels of the dense blocks (32).
        num_blocks: number of RRDBs (23).
        scale: upscaling factor, a power of two (1, 2, 4, 8, ...).
        grad_checkpoint: in training mode, recompute each RRDB in the backward pass (saves memory).

    Shapes: (N, num_in_ch, H, W) -> (N, num_out_ch, scale*H, scale*W); any H, W >= 1.
    """

    def __init__(self, num_in_ch: int = 3, num_out_ch: int = 3, num_feat: int = 64, num_grow: int = 32,
                 num_blocks: int = 23, scale: int = 4, grad_checkpoint: bool = False) -> None:
        super().__init__()
        if scale < 1 or scale & (scale - 1):
            raise ValueError(f"RRDBNet scale must be a power of two (1, 2, 4, ...), got {scale}")
        self.num_in_ch, self.num_out_ch = num_in_ch, num_out_ch
        self.num_feat, self.num_grow, self.num_blocks, self.scale = num_feat, num_grow, num_blocks, scale
        self.grad_checkpoint = grad_checkpoint
        self.conv_first = nn.Conv2d(num_in_ch, num_feat, 3, 1, 1)
        self.body = nn.Sequential(*[RRDB(num_feat, num_grow) for _ in range(num_blocks)])
        self.conv_body = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.up_names = tuple(f"conv_up{i + 1}" for i in range(int(math.log2(scale))))
        for name in self.up_names:
            setattr(self, name, nn.Conv2d(num_feat, num_feat, 3, 1, 1))
        self.conv_hr = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_last = nn.Conv2d(num_feat, num_out_ch, 3, 1, 1)
        self.reset_parameters()

    def config(self) -> dict[str, int]:
        """Constructor arguments (JSON-serialisable) that rebuild this architecture."""
        return {"num_in_ch": self.num_in_ch, "num_out_ch": self.num_out_ch, "num_feat": self.num_feat,
                "num_grow": self.num_grow, "num_blocks": self.num_blocks, "scale": self.scale}

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """ESRGAN initialisation: Kaiming-normal x 0.1 and zero bias in the dense blocks.

        The small initial residual branches keep the 23-block trunk close to identity at the start of
        training; the other convolutions keep PyTorch's default initialisation.
        """
        for module in self.body.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight)
                module.weight.mul_(0.1)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.conv_first(x)
        body = feat
        for block in self.body:
            if self.grad_checkpoint and self.training and torch.is_grad_enabled():
                body = checkpoint(block, body, use_reentrant=False)
            else:
                body = block(body)
        feat = feat + self.conv_body(body)
        for name in self.up_names:
            feat = F.interpolate(feat, scale_factor=2, mode="nearest")
            feat = F.leaky_relu(getattr(self, name)(feat), LRELU_SLOPE)
        return self.conv_last(F.leaky_relu(self.conv_hr(feat), LRELU_SLOPE))
