"""The attribute-encoder interface and its registry.

Every encoder takes target faces ``(N, 3, S, S)`` RGB in [-1, 1] and returns ``num_levels(S) =
log2(S)`` attribute maps, coarsest first: level ``k`` is ``(N, channels[k], 2**(k+1), 2**(k+1))``,
so at GHOST's 256 px the maps run 2x2, 4x4, ..., 256x256 (see :mod:`faceswap_pl.models.sizing`).
The AAD generator only reads :attr:`AttributeEncoder.channels`, never which encoder it got.
Factories take ``(image_size, width, **kwargs)``.
"""

from __future__ import annotations

import torch
from torch import nn

from faceswap_pl.errors import InputShapeError
from faceswap_pl.models.sizing import check_image_size, num_levels
from faceswap_pl.registry import Registry


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


#: the attribute encoders by name (implementations register themselves; see the package docstring)
ATTRIBUTE_ENCODERS = Registry("attribute encoder")
register_attribute_encoder = ATTRIBUTE_ENCODERS.register
