"""A reader of ncnn models: the text graph (``.param``) and the Convolution weights of the ``.bin``.

:func:`parse_ncnn_param` reads the graph into :class:`NcnnLayer` records and :class:`NcnnGraph` wires them
(``Split`` layers looked through); :func:`read_convolution_weights` reads the ``.bin`` following ncnn's
``ModelBin`` rules. Weights come back as numpy arrays at their stored precision (fp16 weights stay fp16),
so converting them is lossless. What a graph must look like is the caller's business (Real-ESRGAN's
RRDBNet: :func:`faceswap_pl.models.restoration.realesrgan.read_ncnn_rrdbnet`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from faceswap_pl.errors import NcnnModelError

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


class NcnnGraph:
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


def read_convolution_weights(layers: list[NcnnLayer], bin_path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The weights of every 3x3 ``Convolution`` layer of ``layers`` from ``bin_path``, by layer name.

    Layers are read in file order (a graph whose only weighted layers are 3x3 convolutions, as ncnn
    writes them); every byte of the file must be used.

    Returns:
        ``{layer name: (weight (out, in, 3, 3) at its stored precision, bias (out,) fp32)}``.

    Raises:
        NcnnModelError: the file is too short, uses an unsupported storage, or has bytes left over.
    """
    weights: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    data = memoryview(Path(bin_path).read_bytes())
    offset = 0
    for layer in layers:
        if layer.type != "Convolution":
            continue
        out_ch, n_weight = int(layer.get(0, 0)), int(layer.get(6, 0))
        weight, offset = _load_blob(data, offset, n_weight, True, f"{layer.name} weights")
        bias, offset = _load_blob(data, offset, out_ch, False, f"{layer.name} bias")
        weights[layer.name] = (weight.reshape(out_ch, n_weight // (out_ch * 9), 3, 3), bias)
    if offset != len(data):
        raise NcnnModelError(f"{Path(bin_path).name}: {len(data) - offset} bytes left over after the last layer "
                             f"(param and bin do not belong together).")
    return weights
