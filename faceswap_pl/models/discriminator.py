"""Multi-scale PatchGAN discriminator (pix2pixHD), as GHOST trains it.

``num_scales`` copies of an ``n_layers`` PatchGAN see the image at full, 1/2, 1/4, ... resolution
(AvgPool 3x3, stride 2, padding 1, ``count_include_pad=False`` between scales); each returns a map of
raw patch scores (no sigmoid: GHOST trains it with the hinge loss).

GHOST's defaults (``num_scales=3, n_layers=5, ndf=64, norm="instance"``) give its
``MultiscaleDiscriminator`` keys and shapes (``layer{i}.{j}.weight|bias``; 33.46M parameters), so a
GHOST ``D_*.pth`` loads with :meth:`MultiscaleDiscriminator.from_ghost_checkpoint`. As in GHOST,
``layer{num_scales - 1}`` sees the full-resolution image and ``layer0`` the coarsest.

Example:
    >>> d = MultiscaleDiscriminator(num_scales=2, n_layers=3, ndf=8)
    >>> [tuple(s.shape) for s in d(torch.zeros(1, 3, 64, 64))]
    [(1, 1, 11, 11), (1, 1, 7, 7)]
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from faceswap_pl.errors import InputShapeError, ModelOptionError
from faceswap_pl.models.importers.checkpoint import load_checkpoint_file, load_state_dict_strict
from faceswap_pl.models.sizing import check_positive_int

NORMS = {
    "instance": lambda c: nn.InstanceNorm2d(c, affine=False),  # no state: GHOST's D has none
    "batch": nn.BatchNorm2d,
    "none": lambda c: nn.Identity(),
}
MAX_FILTERS = 512


def patchgan_layers(in_channels: int, ndf: int, n_layers: int, norm: str) -> nn.Sequential:
    """One PatchGAN as a flat Sequential (pix2pixHD ``NLayerDiscriminator`` without intermediate outputs).

    4x4 convs with bias, padding 2: a stride-2 conv to ``ndf`` + LeakyReLU(0.2); ``n_layers - 1``
    stride-2 convs doubling the channels (capped at 512) + norm + LeakyReLU; one stride-1 conv
    likewise; a stride-1 conv to 1 channel. With ``norm="none"`` an Identity keeps the indices.

    Shape: ``(N, C, H, W) -> (N, 1, H', W')``: each stride-2 conv maps a side ``s`` to ``s // 2 + 1``,
    each stride-1 conv to ``s + 1`` (256 px, 5 layers: 11x11).
    """
    layers: list[nn.Module] = [nn.Conv2d(in_channels, ndf, kernel_size=4, stride=2, padding=2),
                               nn.LeakyReLU(0.2, inplace=True)]
    channels = ndf
    for n in range(1, n_layers + 1):
        prev, channels = channels, min(channels * 2, MAX_FILTERS)
        layers += [nn.Conv2d(prev, channels, kernel_size=4, stride=2 if n < n_layers else 1, padding=2),
                   NORMS[norm](channels), nn.LeakyReLU(0.2, inplace=True)]
    layers.append(nn.Conv2d(channels, 1, kernel_size=4, stride=1, padding=2))
    return nn.Sequential(*layers)


class MultiscaleDiscriminator(nn.Module):
    """pix2pixHD multi-scale PatchGAN.

    Args:
        in_channels: image channels (3).
        ndf: filters of the first conv (GHOST: 64).
        n_layers: stride-2 convs per scale (GHOST: 5).
        num_scales: image scales, each with its own PatchGAN (GHOST: 3).
        norm: ``instance`` (GHOST; no affine), ``batch`` or ``none``.
    Shape:
        ``(N, C, H, W)`` -> list of ``num_scales`` score maps ``(N, 1, h_k, w_k)``, full resolution
        first. (GHOST returns ``[[map], ...]``; its losses read ``map = out[k][0]``, here ``out[k]``.)
    """

    def __init__(self, in_channels: int = 3, ndf: int = 64, n_layers: int = 5, num_scales: int = 3,
                 norm: str = "instance") -> None:
        super().__init__()
        if norm not in NORMS:
            raise ModelOptionError(f"Unknown discriminator norm '{norm}'; valid choices: {', '.join(NORMS)}.")
        check_positive_int(in_channels, "in_channels", "3 for RGB")
        check_positive_int(ndf, "ndf", "GHOST: 64")
        check_positive_int(n_layers, "n_layers", "GHOST: 5")
        check_positive_int(num_scales, "num_scales", "GHOST: 3")
        self.in_channels = in_channels
        self.num_scales = num_scales
        for i in range(num_scales):
            self.add_module(f"layer{i}", patchgan_layers(in_channels, ndf, n_layers, norm))
        self.downsample = nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise InputShapeError(
                f"MultiscaleDiscriminator expects images of shape (N, {self.in_channels}, H, W) but got "
                f"{tuple(x.shape)}."
            )
        scores = []
        for k in range(self.num_scales):
            scores.append(getattr(self, f"layer{self.num_scales - 1 - k}")(x))
            if k < self.num_scales - 1:
                x = self.downsample(x)
        return scores

    @classmethod
    def from_ghost_checkpoint(cls, path: str | Path) -> "MultiscaleDiscriminator":
        """GHOST's discriminator (3 scales, 5 layers, ndf 64, InstanceNorm) loaded strictly from ``D_*.pth``.

        Raises:
            CheckpointMismatchError: keys / shapes differ (the message lists them).
            CheckpointNotFoundError, CheckpointReadError: from :func:`load_checkpoint_file`.
        """
        state_dict = load_checkpoint_file(path)
        with torch.device("meta"):  # skip the random init: every tensor is overwritten below
            model = cls()
        model.to_empty(device="cpu")
        load_state_dict_strict(
            model, state_dict, f"GHOST discriminator weights '{path}'",
            hint="Pass a D_*.pth file from GHOST (MultiscaleDiscriminator, 3 scales, 5 layers, ndf 64).",
        )
        return model
