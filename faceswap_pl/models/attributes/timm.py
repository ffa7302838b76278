"""``timm:<model_name>`` attribute encoders: a timm ``features_only`` CNN plus a light top-down decoder.

The decoder turns the backbone's few feature maps (e.g. strides 2..32) into the full set of AEI-Net
levels (2x2 .. S px, coarsest first, as every :class:`AttributeEncoder`):

* below the deepest backbone feature, 3x3 stride-2 convs continue down to 2x2;
* the 2x2 level is the end of that path, or the 1x1-conv + BatchNorm projection of a 2x2 backbone
  feature;
* from 4x4 up, each level is ``bilinear x2 -> 3x3 conv -> BatchNorm -> LeakyReLU(0.1)`` of the level
  before, plus the 1x1-conv + BatchNorm projection of the backbone feature at that resolution, if
  any (LinkNet-style addition).

Decoder channels per level: ``min(512, 4096 / resolution) * width`` (512 at 2..8 px, 64 at 64 px,
16 at 256 px). The backbone keeps its own widths; ``pretrained`` defaults to False (nothing is
downloaded unless asked). Input [-1, 1] is converted to the backbone's mean/std inside.

Example:
    >>> enc = TimmAttributeEncoder("resnet18", image_size=64, width=0.25)      # doctest: +SKIP
    >>> enc.channels                                                            # doctest: +SKIP
    [128, 128, 128, 64, 32, 16]
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from faceswap_pl.errors import ModelOptionError, UnknownNameError
from faceswap_pl.models.attributes.base import ATTRIBUTE_ENCODERS, AttributeEncoder
from faceswap_pl.models.sizing import check_width, level_resolutions, scaled
from faceswap_pl.models.weight_init import ghost_weight_init


def decoder_channels(resolution: int) -> int:
    """Base decoder channels at ``resolution`` px."""
    return min(512, 4096 // resolution)


def _conv_bn_act(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    """3x3 conv (no bias) -> BatchNorm -> LeakyReLU(0.1): ``(N, C, H, W) -> (N, C', H/stride, W/stride)``."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.LeakyReLU(0.1, inplace=True),
    )


#: ``timm.create_model`` arguments that only say where the initial weights come from
WEIGHT_SOURCE_KWARGS = ("pretrained", "pretrained_cfg", "pretrained_cfg_overlay", "checkpoint_path")


def architecture_kwargs(kwargs: dict | None) -> dict:
    """The backbone arguments that shape the network: ``kwargs`` without where its weights come from (a trained
    checkpoint or export brings its own, so rebuilding it never downloads or reads pretrained files)."""
    return {k: v for k, v in (kwargs or {}).items() if k not in WEIGHT_SOURCE_KWARGS}


def _create_backbone(model_name: str, pretrained: bool, **kwargs) -> nn.Module:
    import timm

    if not timm.is_model(model_name):
        raise UnknownNameError(
            f"Unknown timm model '{model_name}' for the attribute encoder 'timm:{model_name}'; list valid "
            "names with timm.list_models('<pattern>'), e.g. timm:resnet18 or timm:efficientnet_b0."
        )
    try:
        return timm.create_model(model_name, pretrained=pretrained, features_only=True, **kwargs)
    except (RuntimeError, ValueError, TypeError) as exc:
        raise ModelOptionError(
            f"timm model '{model_name}' cannot serve as an attribute encoder with features_only=True "
            f"and {kwargs or 'no extra arguments'} ({exc}); pick a CNN such as timm:resnet18."
        ) from exc


class TimmAttributeEncoder(AttributeEncoder):
    """A timm feature pyramid decoded to AEI-Net's levels (registry name ``timm:<model_name>``).

    Args:
        model_name: any timm model that supports ``features_only=True`` with NCHW outputs.
        image_size: S in (64, 128, 256, 512).
        width: multiplier of the decoder channels (the backbone is unchanged).
        pretrained: load timm's pretrained weights (downloads; off by default).
        **kwargs: passed to ``timm.create_model``.
    Shape:
        ``(N, 3, S, S)`` in [-1, 1] -> ``[(N, channels[k], 2**(k+1), 2**(k+1)) for k in range(log2(S))]``.
    """

    def __init__(self, model_name: str, image_size: int = 256, width: float = 1.0, pretrained: bool = False,
                 **kwargs) -> None:
        super().__init__(image_size)
        width = check_width(width)
        self.model_name = model_name
        self.backbone = _create_backbone(model_name, pretrained, **kwargs)
        size = self.image_size
        reductions = self.backbone.feature_info.reduction()
        features = self.backbone.feature_info.channels()
        if max(reductions) > size // 2:
            raise ModelOptionError(
                f"timm model '{model_name}' downsamples by {max(reductions)}, leaving less than 2x2 at "
                f"image_size {size}; use a larger image_size or a shallower model."
            )
        # deepest backbone feature for each resolution it covers
        self.feature_at = {size // red: i for i, red in enumerate(reductions)}
        resolutions = level_resolutions(self.num_levels)
        out = {r: scaled(decoder_channels(r), width) for r in resolutions}
        deepest = min(self.feature_at)

        self.down = nn.ModuleList()
        prev = features[self.feature_at[deepest]]
        r = deepest
        while r > 2:
            r //= 2
            self.down.append(_conv_bn_act(prev, out[r], stride=2))
            prev = out[r]
        self.lateral = nn.ModuleDict({
            str(r): nn.Sequential(nn.Conv2d(features[i], out[r], kernel_size=1, bias=False), nn.BatchNorm2d(out[r]))
            for r, i in self.feature_at.items()
        })
        self.up = nn.ModuleList(_conv_bn_act(out[r // 2], out[r], stride=1) for r in resolutions[1:])
        self.channels = [out[r] for r in resolutions]
        self.down.apply(ghost_weight_init)
        self.lateral.apply(ghost_weight_init)
        self.up.apply(ghost_weight_init)

        cfg = getattr(self.backbone, "pretrained_cfg", None) or {}
        mean = torch.tensor(cfg.get("mean", (0.485, 0.456, 0.406)), dtype=torch.float32)
        std = torch.tensor(cfg.get("std", (0.229, 0.224, 0.225)), dtype=torch.float32)
        # [-1, 1] -> backbone normalisation: ((x + 1) / 2 - mean) / std = x * scale + shift
        self.register_buffer("input_scale", (0.5 / std).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("input_shift", ((0.5 - mean) / std).view(1, 3, 1, 1), persistent=False)

    def _lateral(self, resolution: int, feats: list[torch.Tensor]) -> torch.Tensor:
        y = self.lateral[str(resolution)](feats[self.feature_at[resolution]])
        if y.shape[-1] != resolution or y.shape[-2] != resolution:  # models with odd padding
            y = F.interpolate(y, size=(resolution, resolution), mode="bilinear", align_corners=True)
        return y

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        self.check_input(x)
        feats = self.backbone(x * self.input_scale + self.input_shift)
        deepest = min(self.feature_at)
        if deepest > 2:
            y = feats[self.feature_at[deepest]]
            for conv in self.down:
                y = conv(y)
        else:
            y = self._lateral(2, feats)
        levels = [y]
        for conv, r in zip(self.up, level_resolutions(self.num_levels)[1:]):
            y = conv(F.interpolate(levels[-1], scale_factor=2, mode="bilinear", align_corners=True))
            if str(r) in self.lateral:
                y = y + self._lateral(r, feats)
            levels.append(y)
        return levels


def create_timm_encoder(model_name: str, image_size: int = 256, width: float = 1.0, **kwargs) -> TimmAttributeEncoder:
    """Factory for ``timm:<model_name>``; kwargs go to ``timm.create_model`` (e.g. ``pretrained=True``)."""
    return TimmAttributeEncoder(model_name, image_size=image_size, width=width, **kwargs)


ATTRIBUTE_ENCODERS.register_prefix("timm:", create_timm_encoder, placeholder="<model_name>")
