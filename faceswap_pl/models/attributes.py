"""Multi-level attribute encoders of AEI-Net, in one registry.

Every encoder takes target faces ``(N, 3, S, S)`` RGB in [-1, 1] and returns ``num_levels(S) =
log2(S)`` attribute maps, coarsest first: level ``k`` is ``(N, channels[k], 2**(k+1), 2**(k+1))``,
so at GHOST's 256 px the maps run 2x2, 4x4, ..., 256x256 (see :mod:`faceswap_pl.models.sizing`).
The AAD generator only reads :attr:`AttributeEncoder.channels`, never which encoder it got.

Names (``create_attribute_encoder(name, image_size=256, width=1.0, **kwargs)``):
    ``unet``            GHOST's default: stride-2 4x4 convs (BatchNorm, LeakyReLU 0.1) down to 2x2,
                        4x4 transposed convs up with concatenated skips, a final bilinear x2.
                        256 px: channels 1024, 2048, 1024, 512, 256, 128, 64, 64.
    ``linknet``         the same with skips added instead of concatenated:
                        1024, 1024, 512, 256, 128, 64, 32, 32.
    ``resnet``          GHOST's Bottleneck ResNet (two blocks per stage), the unet's channels.
    ``timm:<model>``    any timm ``features_only`` CNN (``pretrained=False`` unless passed) plus a
                        light top-down decoder (:mod:`faceswap_pl.models.attributes_timm`).

At ``width=1`` and 256 px the first three have GHOST's exact layout, key names and initialisation,
so GHOST ``G_*.pth`` encoder weights load into them (see :class:`~faceswap_pl.models.aei_net.AEINet`).

Example:
    >>> enc = create_attribute_encoder("unet", image_size=64, width=0.125)
    >>> [tuple(z.shape) for z in enc(torch.zeros(1, 3, 64, 64))][:2]
    [(1, 128, 2, 2), (1, 256, 4, 4)]
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from faceswap_pl.errors import UnknownNameError
from faceswap_pl.models.sizing import (
    InputShapeError,
    check_image_size,
    check_width,
    level_resolutions,
    num_levels,
    scaled,
)
from faceswap_pl.models.weight_init import ghost_weight_init


class AttributeEncoder(nn.Module):
    """Interface: ``forward(x: (N, 3, S, S) in [-1, 1]) -> list of log2(S) maps``, coarsest first.

    Attributes:
        image_size: S, the side the encoder was built for.
        channels: channel count of each returned level, coarsest (2x2) first.
    """

    def __init__(self, image_size: int) -> None:
        super().__init__()
        self.image_size = check_image_size(image_size)
        self.channels: list[int] = []

    @property
    def num_levels(self) -> int:
        return num_levels(self.image_size)

    def check_input(self, x: torch.Tensor) -> None:
        """Raise :class:`InputShapeError` unless ``x`` is ``(N, 3, S, S)``."""
        size = self.image_size
        if x.ndim != 4 or x.shape[1] != 3 or x.shape[-2] != size or x.shape[-1] != size:
            raise InputShapeError(
                f"{type(self).__name__} was built for images of shape (N, 3, {size}, {size}) but got "
                f"{tuple(x.shape)}; resize the faces to {size} px or build the model with "
                f"image_size={x.shape[-1]}."
            )


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


_FACTORIES: dict[str, Callable[..., AttributeEncoder]] = {}
TIMM_PREFIX = "timm:"


def register_attribute_encoder(name: str):
    """Decorator registering a factory ``(image_size, width, **kwargs) -> AttributeEncoder``."""

    def wrap(factory):
        _FACTORIES[name] = factory
        return factory

    return wrap


@register_attribute_encoder("unet")
def _unet(image_size: int = 256, width: float = 1.0) -> AttributeEncoder:
    return UNetAttributeEncoder(image_size, width, merge="concat")


@register_attribute_encoder("linknet")
def _linknet(image_size: int = 256, width: float = 1.0) -> AttributeEncoder:
    return UNetAttributeEncoder(image_size, width, merge="add")


@register_attribute_encoder("resnet")
def _resnet(image_size: int = 256, width: float = 1.0) -> AttributeEncoder:
    return ResNetAttributeEncoder(image_size, width)


def attribute_encoder_names() -> list[str]:
    """Registered names, plus the ``timm:<model_name>`` pattern."""
    return sorted(_FACTORIES) + [f"{TIMM_PREFIX}<model_name>"]


def create_attribute_encoder(name: str, image_size: int = 256, width: float = 1.0, **kwargs) -> AttributeEncoder:
    """Build an attribute encoder by registry name (see the module docstring).

    Args:
        name: ``unet``, ``linknet``, ``resnet`` or ``timm:<model_name>``.
        image_size: S, one of 64, 128, 256, 512; the encoder returns log2(S) levels.
        width: channel multiplier (1.0 = GHOST); for timm encoders it scales the decoder only.
        **kwargs: passed to the factory; for timm, to ``timm.create_model`` (e.g. ``pretrained=True``).
    Raises:
        UnknownNameError: unknown name (the message lists the valid ones).
        ModelOptionError: unsupported image size or width.
    """
    if not isinstance(name, str):
        raise UnknownNameError(
            f"Attribute encoder name must be a string; valid names: {', '.join(attribute_encoder_names())}."
        )
    if name.startswith(TIMM_PREFIX):
        from faceswap_pl.models.attributes_timm import TimmAttributeEncoder

        return TimmAttributeEncoder(name[len(TIMM_PREFIX):], image_size=image_size, width=width, **kwargs)
    if name not in _FACTORIES:
        raise UnknownNameError(
            f"Unknown attribute encoder '{name}'; valid names: {', '.join(attribute_encoder_names())} "
            "(e.g. timm:resnet18)."
        )
    return _FACTORIES[name](image_size=image_size, width=width, **kwargs)
