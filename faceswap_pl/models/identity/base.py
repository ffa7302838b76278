"""The identity-encoder interface and its registry.

Every encoder takes aligned face crops — (N, 3, S, S) RGB in [-1, 1] on the ArcFace template scaled
to S — and returns (N, D) L2-normalised embeddings. Each converts internally (resize to its own
input size, channel order, value range), differentiably, so a 256-px generator output feeds it
directly. Pretrained encoders are frozen (:class:`~faceswap_pl.models.frozen.FrozenModule`).

:meth:`IdentityEncoder.features` gives the raw (unnormalised) features with the resize to the
network's input chosen by name (:data:`IDENTITY_RESIZES`): GHOST's train.py resizes bilinearly
without antialiasing (``bilinear``), its inference scales a 224-px crop by 0.5 with
``align_corners=True`` (``corners``); ``antialias`` is each encoder's own area-like resize.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from faceswap_pl.errors import ModelOptionError
from faceswap_pl.models.frozen import FrozenModule
from faceswap_pl.registry import Registry

#: how an aligned crop is resized to the identity network's input (see the module docstring)
IDENTITY_RESIZES = ("bilinear", "corners", "antialias")


def check_identity_resize(resize: str, option: str = "model.identity_resize") -> None:
    if resize not in IDENTITY_RESIZES:
        raise ModelOptionError(f"{option}={resize!r} is not one of {', '.join(IDENTITY_RESIZES)} (GHOST's training: "
                               f"bilinear).")


class IdentityEncoder(FrozenModule):
    """Interface: ``forward(x: (N, 3, S, S) in [-1, 1]) -> (N, embedding_dim)`` unit vectors.

    Subclasses implement two steps: :meth:`preprocess` (aligned crop -> the network's own input:
    size, value range, channel order, framing) and :meth:`network` (that input -> raw features).
    """

    embedding_dim: int = 0
    input_size: int = 112

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - interface
        """(N, 3, S, S) RGB [-1, 1] aligned crops -> the network's input, differentiably."""
        raise NotImplementedError

    def network(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - interface
        """The network's input -> (N, embedding_dim) raw (unnormalised) features."""
        raise NotImplementedError

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, S, S) RGB [-1, 1] aligned crops -> (N, embedding_dim) raw features."""
        return self.network(self.preprocess(x))

    def features(self, x: torch.Tensor, resize: str = "antialias") -> torch.Tensor:
        """(N, 3, S, S) RGB [-1, 1] aligned crops -> (N, embedding_dim) raw features, resized by ``resize``.

        ``bilinear`` / ``corners``: ``F.interpolate(x, input_size, mode="bilinear", align_corners=False / True)``
        (GHOST's training / inference); ``antialias``: the encoder's own preprocessing (:meth:`embed`).
        """
        if resize != "antialias":
            check_identity_resize(resize, "resize")
            if x.shape[-2:] != (self.input_size, self.input_size):
                x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear",
                                  align_corners=resize == "corners")
        return self.embed(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.embed(x), dim=-1)


#: the identity encoders by name (implementations register themselves; see the package docstring)
IDENTITY_ENCODERS = Registry("identity encoder")
register_identity = IDENTITY_ENCODERS.register
