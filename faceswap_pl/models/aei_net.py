"""AEI-Net (FaceShifter / GHOST): multi-level attribute encoder + AAD generator; GHOST checkpoint import.

At ``width=1``, ``image_size=256`` and ``id_dim=512`` the state dict has GHOST's key names and shapes
(``encoder.*``, ``generator.*``) for every backbone (unet, linknet, resnet) and AAD block count, so
``AEINet.from_ghost_checkpoint("G_unet_2blocks.pth")`` loads GHOST's released generators strictly.

Example:
    >>> net = AEINet("unet", num_aad_blocks=1, image_size=64, width=0.125)
    >>> y, z = net(torch.zeros(2, 3, 64, 64), torch.zeros(2, 512))
    >>> tuple(y.shape), len(z)
    ((2, 3, 64, 64), 6)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from faceswap_pl.errors import CheckpointMismatchError
from faceswap_pl.models.aad import AADGenerator, generator_channels
from faceswap_pl.models.attributes import create_attribute_encoder
from faceswap_pl.models.importers.checkpoint import load_checkpoint_file, load_state_dict_strict
from faceswap_pl.models.recompute import recomputed
from faceswap_pl.models.sizing import IMAGE_SIZES, MAX_WIDTH


class AEINet(nn.Module):
    """Face-swap generator: ``Y = G(z_att(target), id_embedding)``.

    Args:
        backbone: attribute encoder name (``unet``, ``linknet``, ``resnet``, ``timm:<model>``).
        num_aad_blocks: AAD steps per residual block (GHOST: 1, 2, 3).
        image_size: S in (64, 128, 256, 512); the encoder and generator use log2(S) levels.
        width: channel multiplier of encoder and generator (1.0 = GHOST).
        id_dim: identity embedding size (512 for ArcFace as GHOST, 128 for SFace).
        encoder_kwargs: extra arguments for the encoder factory (timm: e.g. ``{"pretrained": True}``).
    Shape:
        ``target (N, 3, S, S)`` in [-1, 1], ``id_embedding (N, id_dim)`` ->
        ``Y (N, 3, S, S)`` in [-1, 1] and ``z_att``: log2(S) maps, coarsest (2x2) first.
    """

    def __init__(self, backbone: str = "unet", num_aad_blocks: int = 2, image_size: int = 256,
                 width: float = 1.0, id_dim: int = 512, encoder_kwargs: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self.backbone = backbone
        self.image_size = image_size
        self.encoder = create_attribute_encoder(backbone, image_size=image_size, width=width, **(encoder_kwargs or {}))
        self.generator = AADGenerator(self.encoder.channels, id_dim=id_dim, num_aad_blocks=num_aad_blocks, width=width)

    # Recompute the attribute encoder's activations in the backward pass instead of storing them (its outputs
    # are kept): the same values, gradients and BatchNorm statistics (:func:`~faceswap_pl.models.recompute.recomputed`).
    recompute_encoder: bool = False

    @property
    def id_dim(self) -> int:
        return self.generator.id_dim

    @property
    def num_aad_blocks(self) -> int:
        return self.generator.num_aad_blocks

    def get_attr(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Multi-level attributes of ``x (N, 3, S, S)``: log2(S) maps, coarsest first."""
        if self.recompute_encoder:
            return recomputed(self.encoder, self.encoder, x)
        return self.encoder(x)

    def forward(self, target: torch.Tensor, id_embedding: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        z_att = self.get_attr(target)
        return self.generator(z_att, id_embedding), z_att

    @classmethod
    def from_ghost_checkpoint(cls, path: str | Path, backbone: str | None = None,
                              num_aad_blocks: int | None = None) -> "AEINet":
        """Build the network a GHOST generator file (``G_*.pth``) was trained as, and load it strictly.

        The layout (backbone, AAD blocks, identity size, and, for our own GHOST-layout files, image
        size and width) is read from the keys and shapes; see :meth:`GhostGeneratorLayout.infer`.

        Args:
            path: GHOST ``G_*.pth`` (a state dict, optionally wrapped / ``module.``-prefixed), or a
                ``unet`` / ``linknet`` / ``resnet`` :class:`AEINet` state dict of any size and width.
            backbone: expected backbone; inferred from the keys when None.
            num_aad_blocks: expected AAD block count; inferred from the keys when None.
        Returns:
            the :class:`AEINet` (GHOST's: 256 px, width 1, id_dim 512) holding the file's weights,
            in train mode.
        Raises:
            CheckpointMismatchError: the file is a generator of another backbone / block count than
                asked (the message names what it is), or its keys / shapes fit no GHOST layout.
            CheckpointNotFoundError, CheckpointReadError: from :func:`load_checkpoint_file`.
        """
        state_dict = load_checkpoint_file(path)
        what = f"GHOST generator weights '{path}'"
        layout = GhostGeneratorLayout.infer(state_dict)
        if layout is None:  # not a GHOST generator: the strict load below lists what differs
            layout = GhostGeneratorLayout("unet" if backbone is None else backbone,
                                          2 if num_aad_blocks is None else num_aad_blocks)
        else:
            asked = (layout.backbone if backbone is None else backbone,
                     layout.num_aad_blocks if num_aad_blocks is None else num_aad_blocks)
            if asked != (layout.backbone, layout.num_aad_blocks):
                raise CheckpointMismatchError(
                    f"{what} are a '{layout.backbone}' generator with {layout.num_aad_blocks} AAD block(s), "
                    f"not '{asked[0]}' with {asked[1]}; pass backbone='{layout.backbone}', "
                    f"num_aad_blocks={layout.num_aad_blocks} or leave both out to infer them."
                )
        with torch.device("meta"):  # skip the random init: every tensor is overwritten below
            model = cls(layout.backbone, layout.num_aad_blocks, image_size=layout.image_size,
                        width=layout.width, id_dim=layout.id_dim)
        model.to_empty(device="cpu")
        for module in model.modules():  # counters a file may lack must not stay uninitialised memory
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.reset_running_stats()
        load_state_dict_strict(
            model, state_dict, what,
            hint=(f"It does not fit GHOST's AEI_Net('{layout.backbone}', num_blocks={layout.num_aad_blocks}) "
                  "layout; pass a G_*.pth file from GHOST."),
        )
        return model


@dataclass(frozen=True)
class GhostGeneratorLayout:
    """What a GHOST-layout ``AEI_Net`` state dict was built as (defaults: GHOST's)."""

    backbone: str
    num_aad_blocks: int
    id_dim: int = 512
    image_size: int = 256
    width: float = 1.0

    @classmethod
    def infer(cls, state_dict: Mapping[str, torch.Tensor]) -> "GhostGeneratorLayout | None":
        """Read the layout from key names and shapes; None when they are not a GHOST generator's.

        * backbone: ``encoder.layer1.*`` -> resnet; else the second up conv's input
          (``encoder.deconv2``) twice the first one's output -> unet, equal -> linknet;
        * AAD blocks: AAD layers in ``generator.AADBlk1.add_blocks``;
        * id_dim, width: ``generator.up1.weight`` is ``(id_dim, 1024 * width, 2, 2)`` (widths that are
          multiples of 1/1024 round-trip exactly);
        * image_size: ``2 ** (number of AADBlk levels)``.
        """
        up = state_dict.get("generator.up1.weight")
        if up is None or up.ndim != 4:
            return None
        blocks = 0
        while f"generator.AADBlk1.add_blocks.{3 * blocks}.conv1.weight" in state_dict:
            blocks += 1
        levels = 0
        while f"generator.AADBlk{levels + 1}.add_blocks.0.conv1.weight" in state_dict:
            levels += 1
        if blocks == 0 or 2 ** levels not in IMAGE_SIZES or not 0 < up.shape[1] <= MAX_WIDTH * generator_channels(2):
            return None
        if "encoder.layer1.0.conv1.weight" in state_dict:
            backbone = "resnet"
        else:
            first = state_dict.get("encoder.deconv1.deconv.weight")
            second = state_dict.get("encoder.deconv2.deconv.weight")
            if first is None or second is None:
                return None
            if second.shape[0] == 2 * first.shape[1]:
                backbone = "unet"
            elif second.shape[0] == first.shape[1]:
                backbone = "linknet"
            else:
                return None
        return cls(backbone, blocks, id_dim=int(up.shape[0]), image_size=2 ** levels,
                   width=int(up.shape[1]) / generator_channels(2))
