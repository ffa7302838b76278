"""GHOST's trainable "super-resolution block": a small same-size residual U-Net restoring swapped face crops.

RGB [-1, 1] in and out. Trained by :class:`faceswap_pl.training.restoration.RestorationModule`
(``faceswap-pl restoration fit``); :func:`load_restorer` reads it from that training checkpoint or from
safetensors + JSON config (:func:`save_restorer`).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

from faceswap_pl.errors import CheckpointNotFoundError, InputShapeError, ModelFileError, ModelOptionError
from faceswap_pl.files import read_json
from faceswap_pl.models.importers.checkpoint import (
    load_checkpoint_file,
    load_state_dict_strict,
    read_torch_file,
    strip_prefix,
)
from faceswap_pl.models.restoration.base import CONFIG_FILE, LRELU_SLOPE

#: ``arch`` value in the JSON config written next to a FaceRestorer safetensors file.
RESTORER_ARCH = "FaceRestorer"
#: Top-level key under which a restoration training checkpoint (.ckpt) stores the restorer's config.
RESTORER_CKPT_KEY = "restorer_config"


class _ResBlock(nn.Module):
    """conv3x3 -> LeakyReLU -> conv3x3, added to the input. (N, C, H, W) -> (N, C, H, W)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, 1, 1)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.leaky_relu(self.conv1(x), LRELU_SLOPE))


class FaceRestorer(nn.Module):
    """Same-size face restoration: a residual U-Net that predicts a correction of its input.

    ``stem`` (3 -> width) -> ``depth`` times (stride-2 conv doubling the channels, ``blocks``
    residual blocks) -> ``blocks`` residual blocks at the bottom -> ``depth`` times (nearest x2
    upsample + conv halving the channels, add the skip of that resolution, ``blocks`` residual
    blocks) -> ``head`` (width -> 3). The output is ``input + head(...)``, clamped into [-1, 1]
    (the clamp passes gradients straight through, so saturated pixels still learn). The head starts
    at zero, so an untrained restorer is the identity.

    Args:
        width: channels at full resolution (doubled at every downsampling).
        depth: number of stride-2 downsamplings; inputs must be divisible by ``2 ** depth``.
        blocks: residual blocks per resolution level (encoder, bottom and decoder each).

    Shapes: (N, 3, H, W) RGB in [-1, 1] -> (N, 3, H, W) RGB in [-1, 1], H and W divisible by 2**depth.
    """

    def __init__(self, width: int = 32, depth: int = 3, blocks: int = 2) -> None:
        super().__init__()
        if width < 1 or depth < 0 or blocks < 0:
            raise ModelOptionError(f"FaceRestorer needs width >= 1, depth >= 0 and blocks >= 0, got width={width}, "
                                   f"depth={depth}, blocks={blocks}.")
        self.width, self.depth, self.blocks = int(width), int(depth), int(blocks)
        chans = [width * 2 ** i for i in range(depth + 1)]
        self.stem = nn.Conv2d(3, width, 3, 1, 1)
        self.down = nn.ModuleList(nn.Conv2d(chans[i], chans[i + 1], 3, 2, 1) for i in range(depth))
        self.enc = nn.ModuleList(self._stage(chans[i + 1]) for i in range(depth))
        self.mid = self._stage(chans[depth])
        self.up = nn.ModuleList(nn.Conv2d(chans[i + 1], chans[i], 3, 1, 1) for i in range(depth))
        self.dec = nn.ModuleList(self._stage(chans[i]) for i in range(depth))
        self.head = nn.Conv2d(width, 3, 3, 1, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def _stage(self, channels: int) -> nn.Sequential:
        return nn.Sequential(*[_ResBlock(channels) for _ in range(self.blocks)])

    @property
    def config(self) -> dict[str, int]:
        """Constructor arguments (JSON-serialisable) that rebuild this architecture."""
        return {"width": self.width, "depth": self.depth, "blocks": self.blocks}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        multiple = 2 ** self.depth
        if x.ndim != 4 or x.shape[1] != 3 or x.shape[-2] % multiple or x.shape[-1] % multiple:
            raise InputShapeError(f"FaceRestorer (depth {self.depth}) takes RGB crops (N, 3, H, W) in [-1, 1] with H "
                                  f"and W divisible by {multiple}, got {tuple(x.shape)}; resize the crops (e.g. "
                                  f"to 256 px) or use a restorer of smaller depth.")
        feat = F.leaky_relu(self.stem(x), LRELU_SLOPE)
        skips = []
        for down, enc in zip(self.down, self.enc):
            skips.append(feat)
            feat = enc(F.leaky_relu(down(feat), LRELU_SLOPE))
        feat = self.mid(feat)
        for i in reversed(range(self.depth)):
            feat = F.leaky_relu(self.up[i](F.interpolate(feat, scale_factor=2, mode="nearest")), LRELU_SLOPE)
            feat = self.dec[i](feat + skips[i])
        out = x + self.head(feat)
        return out + (out.clamp(-1.0, 1.0) - out).detach()  # clamped value, straight-through gradient


def save_restorer(restorer: FaceRestorer, path: str | Path) -> Path:
    """Write ``restorer`` as ``path`` (.safetensors) plus its JSON config next to it (same stem, ``.json``).

    Returns the path of the JSON config. :func:`load_restorer` reads the pair back.
    """
    path = Path(path)
    if path.suffix.lower() != ".safetensors":
        raise ValueError(f"save_restorer writes a .safetensors file, got '{path}'.")
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in restorer.state_dict().items()}, str(path))
    config_path = path.with_suffix(".json")
    config_path.write_text(json.dumps({"arch": RESTORER_ARCH, "config": restorer.config, "weights": path.name,
                                       "input": "RGB [-1, 1], (N, 3, H, W)", "output": "RGB [-1, 1], same size"},
                                      indent=1))
    return config_path


def _restorer_config_from_json(path: Path) -> dict:
    candidates = [path.with_suffix(".json"), path.parent / CONFIG_FILE]
    config_path = next((c for c in candidates if c.is_file()), None)
    if config_path is None:
        raise ModelFileError(f"The restorer weights '{path}' have no JSON config next to them; put "
                             f"'{candidates[0].name}' (written by save_restorer) in '{path.parent}'.")
    meta = read_json(config_path, ModelFileError, "write it again with save_restorer")
    if not isinstance(meta, dict) or meta.get("arch", RESTORER_ARCH) != RESTORER_ARCH:
        arch = meta.get("arch") if isinstance(meta, dict) else type(meta).__name__
        raise ModelFileError(f"'{config_path}' describes a {arch!r} model, not a {RESTORER_ARCH}; pass the "
                             f"safetensors file of a restorer written by save_restorer.")
    return meta.get("config", meta)


def _restorer_from_training_checkpoint(path: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    raw = read_torch_file(path)
    if isinstance(raw, dict) and isinstance(raw.get(RESTORER_CKPT_KEY), dict) and isinstance(raw.get("state_dict"), dict):
        return raw[RESTORER_CKPT_KEY], strip_prefix(raw["state_dict"], "restorer.")
    state = raw.get("state_dict") if isinstance(raw, dict) else None
    if isinstance(state, dict) and any(str(k).startswith("generator.") for k in state):
        what = "a face-swap training checkpoint (FaceSwapModule, written by `faceswap-pl fit`)"
    else:
        what = "not a restoration training checkpoint"
    raise ModelFileError(f"'{path}' is {what}, not a restorer; pass a .ckpt written by `faceswap-pl restoration "
                         f"fit` or a FaceRestorer .safetensors file with its JSON config.")


def load_restorer(path: str | Path, device: str | torch.device = "cpu") -> FaceRestorer:
    """A trained :class:`FaceRestorer` in eval mode on ``device``.

    Args:
        path: a restoration training checkpoint (.ckpt written by ``faceswap-pl restoration fit``,
            read with ``torch.load(weights_only=True)``), or a ``.safetensors`` file with its JSON
            config next to it (``<stem>.json`` or ``config.json``, as :func:`save_restorer` writes).
        device: where to put it.

    Raises:
        CheckpointNotFoundError: no such file.
        ModelFileError: the file is not a restorer (e.g. a face-swap checkpoint) or lacks its config.
        CheckpointMismatchError: the weights do not fit the configured architecture.
        CheckpointReadError / UnsafeCheckpointError: the file is corrupt or would run code.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointNotFoundError(f"Restorer file '{path}' does not exist; pass a .ckpt written by "
                                      f"`faceswap-pl restoration fit` (under <default_root_dir>/<experiment>/<run>/"
                                      f"checkpoints) or a FaceRestorer .safetensors file.")
    if path.suffix.lower() == ".safetensors":
        config, state = _restorer_config_from_json(path), load_checkpoint_file(path)
    else:
        config, state = _restorer_from_training_checkpoint(path)
    try:
        restorer = FaceRestorer(**config)
    except (TypeError, ValueError) as exc:
        raise ModelFileError(f"The restorer config stored with '{path}' is not valid ({exc}); pass a file written "
                             f"by this faceswap-pl version.") from None
    load_state_dict_strict(restorer, state, f"restorer weights '{path}'",
                           hint="was the file written for another FaceRestorer size or edited?")
    return restorer.to(device).eval()
