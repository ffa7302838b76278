"""GHOST's U-Net attribute encoder (``unet``, skips concatenated) and its LinkNet variant (``linknet``, added).

Stride-2 4x4 convs (BatchNorm, LeakyReLU 0.1) down to 2x2, 4x4 transposed convs up with the skips, a final
bilinear x2. At ``width=1`` and 256 px: GHOST's exact layout, key names and initialisation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from faceswap_pl.models.attributes.base import AttributeEncoder, register_attribute_encoder
from faceswap_pl.models.sizing import check_width, level_resolutions, scaled
from faceswap_pl.models.weight_init import ghost_weight_init


def unet_feature_channels(resolution: int) -> int:
    """Base channels of the unet / linknet down-path feature at ``resolution`` px (32 at 128 px,
    doubling per halving, capped at 1024)."""
    return min(1024, 4096 // resolution)


class DownConv(nn.Sequential):
    """4x4 stride-2 conv (no bias) -> BatchNorm -> LeakyReLU(0.1): ``(N, C, H, W) -> (N, C', H/2, W/2)``.

    Keys ``0.weight`` (conv), ``1.*`` (BatchNorm), as GHOST's ``conv4x4``.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size=4, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.LeakyReLU(0.1, inplace=True),
        )


class UpMerge(nn.Module):
    """4x4 stride-2 transposed conv (no bias) -> BatchNorm -> LeakyReLU(0.1), then merged with a skip.

    ``merge="concat"``: output ``(N, C' + C_skip, 2H, 2W)``; ``merge="add"``: ``(N, C', 2H, 2W)``
    with ``C' == C_skip``. Keys ``deconv.weight``, ``bn.*`` as GHOST's ``deconv4x4``.
    """

    def __init__(self, in_channels: int, out_channels: int, merge: str) -> None:
        super().__init__()
        self.merge = merge
        self.deconv = nn.ConvTranspose2d(in_channels, out_channels, kernel_size=4, stride=2, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)
        self.lrelu = nn.LeakyReLU(0.1, inplace=True)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.lrelu(self.bn(self.deconv(x)))
        return x + skip if self.merge == "add" else torch.cat((x, skip), dim=1)


class UNetAttributeEncoder(AttributeEncoder):
    """GHOST's ``MLAttrEncoder``: registry names ``unet`` (concatenated skips) and ``linknet`` (added).

    ``log2(S) - 1`` down convs ``conv1..`` take S px to 2x2 (channels by resolution:
    :func:`unet_feature_channels` x width); ``log2(S) - 2`` up convs ``deconv1..`` each merge the
    down feature of their resolution; the last level is a bilinear x2 (align_corners=True) of the one
    before. Shape: ``(N, 3, S, S) -> [(N, channels[k], 2**(k+1), 2**(k+1)) for k in range(log2(S))]``.
    """

    def __init__(self, image_size: int = 256, width: float = 1.0, merge: str = "concat") -> None:
        super().__init__(image_size)
        width = check_width(width)
        resolutions = level_resolutions(self.num_levels)  # 2, 4, ..., S
        feat = {r: scaled(unet_feature_channels(r), width) for r in resolutions[:-1]}
        self.merge = merge

        # down path: S/2, S/4, ..., 2 px
        prev = 3
        for i, r in enumerate(reversed(resolutions[:-1]), start=1):
            self.add_module(f"conv{i}", DownConv(prev, feat[r]))
            prev = feat[r]

        # up path: level 0 is the 2x2 feature itself; levels 1..L-2 come from deconv1..
        self.channels = [feat[2]]
        for j, r in enumerate(resolutions[1:-1], start=1):
            self.add_module(f"deconv{j}", UpMerge(self.channels[-1], feat[r], merge))
            self.channels.append(feat[r] * (2 if merge == "concat" else 1))
        self.channels.append(self.channels[-1])
        self.apply(ghost_weight_init)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        self.check_input(x)
        skips = []
        for i in range(1, self.num_levels):
            x = getattr(self, f"conv{i}")(x)
            skips.append(x)
        levels = [skips.pop()]
        for j in range(1, self.num_levels - 1):
            levels.append(getattr(self, f"deconv{j}")(levels[-1], skips.pop()))
        levels.append(F.interpolate(levels[-1], scale_factor=2, mode="bilinear", align_corners=True))
        return levels


@register_attribute_encoder("unet")
def create_unet(image_size: int = 256, width: float = 1.0) -> AttributeEncoder:
    return UNetAttributeEncoder(image_size, width, merge="concat")


@register_attribute_encoder("linknet")
def create_linknet(image_size: int = 256, width: float = 1.0) -> AttributeEncoder:
    return UNetAttributeEncoder(image_size, width, merge="add")
