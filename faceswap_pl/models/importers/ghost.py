"""What a weight file is, and initialising a generator / discriminator from one (GHOST's ``--pretrained``).

Fine-tuning starts from GHOST's released ``G_*.pth`` / ``D_*.pth`` or from a ``faceswap-pl fit``
checkpoint. When the file is not what the slot expects (a discriminator given as generator, another AAD
block count or backbone than the config builds, 512-d identity inputs with a 128-d encoder), the error
says in one sentence what the file holds and which option fixes it.

Example:
    >>> sd = {"layer0.0.weight": torch.zeros(64, 3, 4, 4)}
    >>> describe_state_dict(sd)
    'a multi-scale discriminator (1 scale, ndf 64)'
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from faceswap_pl.errors import CheckpointMismatchError
from faceswap_pl.models.aei_net import GhostGeneratorLayout
from faceswap_pl.models.importers.checkpoint import load_checkpoint_file, load_state_dict_strict

#: a ``FaceSwapModule`` state dict (a ``faceswap-pl fit`` checkpoint): part prefix -> a key only that part has
MODULE_PARTS = {"generator.": "generator.encoder.", "discriminator.": "discriminator.layer0."}


def _discriminator_layout(state_dict: Mapping[str, torch.Tensor]) -> tuple[int, int] | None:
    """(scales, ndf) of a multi-scale PatchGAN state dict (``layer{k}.{i}.weight``), else None."""
    scales = {int(m.group(1)) for key in state_dict if (m := re.match(r"layer(\d+)\.\d+\.weight$", key))}
    first = state_dict.get("layer0.0.weight")
    if not scales or first is None or first.ndim != 4 or first.shape[-1] != 4:
        return None
    return len(scales), int(first.shape[0])


def describe_state_dict(state_dict: Mapping[str, torch.Tensor]) -> str:
    """A short phrase naming what the weights are, e.g. ``"a GHOST-layout 'unet' generator with 2 AAD blocks ..."``."""
    keys = list(state_dict)
    if any(k.startswith("generator.encoder.") for k in keys) and any(k.startswith("discriminator.") for k in keys):
        return "a faceswap-pl training checkpoint (generator and discriminator)"
    layout = GhostGeneratorLayout.infer(state_dict)
    if layout is not None:
        return (f"a GHOST-layout '{layout.backbone}' generator with {layout.num_aad_blocks} AAD block(s), "
                f"{layout.image_size} px, width {layout.width:g}, {layout.id_dim}-d identity input")
    discriminator = _discriminator_layout(state_dict)
    if discriminator is not None:
        scales, ndf = discriminator
        return f"a multi-scale discriminator ({scales} scale{'s' if scales > 1 else ''}, ndf {ndf})"
    if "fc.weight" in state_dict and "features.weight" in state_dict and any(k.startswith("layer4.") for k in keys):
        return "an ArcFace iresnet identity network (backbone.pth)"
    if any(k.startswith("m0.") or k.startswith("l0.") for k in keys) and "conv1.conv.weight" in state_dict:
        return "an AdaptiveWing FAN landmark network (WFLW_4HG.pth)"
    shown = ", ".join(keys[:3]) + (" ..." if len(keys) > 3 else "")
    return f"an unrecognised network ({len(keys)} tensors: {shown})"


def _part(state_dict: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor] | None:
    """The ``prefix`` part of a faceswap-pl module state dict, or None when the file is not one."""
    # GHOST's own G keys start with "generator." too (its AAD generator); only a module has "generator.encoder."
    if not any(k.startswith(MODULE_PARTS[prefix]) for k in state_dict):
        return None
    return {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}


def _read_slot(path: str | Path, prefix: str) -> tuple[dict[str, torch.Tensor], str]:
    """The weights for one slot (a module checkpoint's ``prefix`` part, or the whole file) and what they are."""
    state_dict = load_checkpoint_file(path)
    own = _part(state_dict, prefix)
    if own is not None:
        state_dict = own
    return state_dict, describe_state_dict(state_dict)


def init_generator_from(generator: nn.Module, path: str | Path, option: str = "model.init_generator") -> str:
    """Load a GHOST ``G_*.pth`` (or the generator of a ``faceswap-pl fit`` checkpoint) into ``generator``.

    Args:
        generator: the :class:`~faceswap_pl.models.aei_net.AEINet` the config built.
        path: the weight file.
        option: the option's name, for messages.
    Returns:
        what was loaded, e.g. ``"a GHOST-layout 'unet' generator with 2 AAD block(s), ..."``.
    Raises:
        CheckpointMismatchError: one sentence naming what the file holds and the option that fits it.
    """
    state_dict, what = _read_slot(path, "generator.")
    layout = GhostGeneratorLayout.infer(state_dict)
    if layout is None:
        raise CheckpointMismatchError(f"{option} '{path}' holds {what}, not a generator; pass a GHOST G_*.pth "
                                      f"(or a faceswap-pl .ckpt){_elsewhere(what)}.")
    built = GhostGeneratorLayout.infer(generator.state_dict())
    differences = [f"{name} {theirs} (the config builds {ours})"
                   for name, theirs, ours, fix in _layout_fields(layout, built) if theirs != ours]
    if differences:
        fixes = [fix for _, theirs, ours, fix in _layout_fields(layout, built) if theirs != ours]
        raise CheckpointMismatchError(f"{option} '{path}' holds {what}: {', '.join(differences)}; set "
                                      f"{', '.join(fixes)} to fine-tune it.")
    load_state_dict_strict(generator, state_dict, f"{option} '{path}'")
    return what


def _layout_fields(theirs, ours) -> list[tuple[str, object, object, str]]:
    return [
        ("backbone", theirs.backbone, ours.backbone, f"model.backbone={theirs.backbone}"),
        ("AAD blocks", theirs.num_aad_blocks, ours.num_aad_blocks, f"model.num_aad_blocks={theirs.num_aad_blocks}"),
        ("image size", theirs.image_size, ours.image_size, f"model.image_size={theirs.image_size}"),
        ("width", theirs.width, ours.width, f"model.width={theirs.width:g}"),
        ("identity size", theirs.id_dim, ours.id_dim, f"model.identity_encoder to a {theirs.id_dim}-d encoder"
         + (" (GHOST's: arcface_iresnet100 with model.identity_weights=backbone.pth)" if theirs.id_dim == 512 else "")),
    ]


def init_discriminator_from(discriminator: nn.Module, path: str | Path,
                            option: str = "model.init_discriminator") -> str:
    """Load a GHOST ``D_*.pth`` (or the discriminator of a ``faceswap-pl fit`` checkpoint) into ``discriminator``.

    Raises:
        CheckpointMismatchError: one sentence naming what the file holds and the options that fit it.
    """
    state_dict, what = _read_slot(path, "discriminator.")
    found = _discriminator_layout(state_dict)
    if found is None:
        raise CheckpointMismatchError(f"{option} '{path}' holds {what}, not a discriminator; pass a GHOST D_*.pth "
                                      f"(or a faceswap-pl .ckpt){_elsewhere(what)}.")
    built = _discriminator_layout(discriminator.state_dict())
    if found != built:
        raise CheckpointMismatchError(
            f"{option} '{path}' holds {what} but the config builds {built[0]} scale(s) with ndf {built[1]}; set "
            f"model.d_scales={found[0]} and model.d_ndf={found[1]} (GHOST: 3 and 64) to fine-tune it.")
    load_state_dict_strict(discriminator, state_dict, f"{option} '{path}'",
                           hint="set model.d_layers and model.d_norm as the file was trained (GHOST: 5, instance).")
    return what


def _elsewhere(what: str) -> str:
    """Where a file of this kind belongs, as the end of a sentence."""
    if "discriminator" in what:
        return "; this file belongs in model.init_discriminator"
    if "generator" in what:
        return "; this file belongs in model.init_generator"
    if "ArcFace" in what:
        return "; this file belongs in model.identity_weights"
    if "AdaptiveWing" in what:
        return "; this file belongs in model.eye_weights"
    return ""
