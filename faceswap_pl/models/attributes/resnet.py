"""GHOST's Bottleneck ResNet attribute encoder (``resnet``): two blocks per stage, the U-Net's channels."""

from __future__ import annotations

import torch
from torch import nn

from faceswap_pl.models.attributes.base import AttributeEncoder, register_attribute_encoder
from faceswap_pl.models.attributes.unet import unet_feature_channels
from faceswap_pl.models.sizing import check_width, level_resolutions, scaled


class Bottleneck(nn.Module):
    """GHOST's ResNet bottleneck: stride on the first 1x1 conv (ResNet v1), expansion 4.

    ``(N, C_in, H, W) -> (N, 4 * planes, H / stride, W / stride)``; a 1x1 conv + BatchNorm
    ``downsample`` shortcut when the stride or the channel count changes.
    """

    expansion = 4

    def __init__(self, in_channels: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        out = planes * self.expansion
        self.conv1 = nn.Conv2d(in_channels, planes, kernel_size=1, stride=stride, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or in_channels != out:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out, kernel_size=1, stride=stride, bias=False), nn.BatchNorm2d(out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + shortcut)


class ResNetAttributeEncoder(AttributeEncoder):
    """GHOST's ``MLAttrEncoderResnet`` (registry name ``resnet``), generalised over image size.

    ``conv0`` (7x7, stride 1) and ``conv1`` (7x7, stride 2) with BatchNorm + ReLU give the S and
    S/2 levels; ``layer1..layer{log2(S)-2}`` (two Bottlenecks each, the first with stride 2) give
    S/4 .. 2 px. Channels per level equal the unet's (at 256 px: 1024, 2048, 1024, 512, 256, 128,
    64, 64). Init: He normal (fan_out) convs, BatchNorm ones/zeros, as GHOST.
    Shape: ``(N, 3, S, S) -> [(N, channels[k], 2**(k+1), 2**(k+1)) for k in range(log2(S))]``.
    """

    blocks_per_stage = 2

    def __init__(self, image_size: int = 256, width: float = 1.0) -> None:
        super().__init__(image_size)
        width = check_width(width)
        size = self.image_size
        stem = scaled(2 * unet_feature_channels(size // 2), width)
        self.conv0 = nn.Conv2d(3, stem, kernel_size=7, stride=1, padding=3, bias=False)
        self.bn0 = nn.BatchNorm2d(stem)
        self.conv1 = nn.Conv2d(stem, stem, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(stem)
        self.relu = nn.ReLU(inplace=True)

        stage_channels = []
        prev = stem
        for k, r in enumerate(reversed(level_resolutions(self.num_levels)[:-2]), start=1):  # S/4 .. 2 px
            base = unet_feature_channels(r) * (2 if r > 2 else 1)  # the unet's level channels
            planes = scaled(base // Bottleneck.expansion, width)
            blocks = [Bottleneck(prev, planes, stride=2)]
            prev = planes * Bottleneck.expansion
            blocks += [Bottleneck(prev, planes) for _ in range(self.blocks_per_stage - 1)]
            self.add_module(f"layer{k}", nn.Sequential(*blocks))
            stage_channels.append(prev)
        self.channels = stage_channels[::-1] + [stem, stem]

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        self.check_input(x)
        full = self.relu(self.bn0(self.conv0(x)))
        levels = [full, self.relu(self.bn1(self.conv1(full)))]
        for k in range(1, self.num_levels - 1):
            levels.append(getattr(self, f"layer{k}")(levels[-1]))
        return levels[::-1]


@register_attribute_encoder("resnet")
def create_resnet(image_size: int = 256, width: float = 1.0) -> AttributeEncoder:
    return ResNetAttributeEncoder(image_size, width)
