"""An RRDBNet from an ncnn export (Real-ESRGAN's ``realesrgan-x4plus.param/.bin``).

:func:`read_ncnn_rrdbnet` checks the graph is an RRDBNet layer by layer and wire by wire (every Convolution,
Concat, Eltwise and the upsampling tail), reads the weights with :mod:`faceswap_pl.models.importers.ncnn`, and
names them as BasicSR's RRDBNet parameters (:class:`~faceswap_pl.models.restoration.rrdbnet.RRDBNet`).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from faceswap_pl.errors import NcnnModelError
from faceswap_pl.models.importers.ncnn import (
    NcnnGraph,
    NcnnLayer,
    ParamValue,
    parse_ncnn_param,
    read_convolution_weights,
)
from faceswap_pl.models.restoration.base import LRELU_SLOPE
from faceswap_pl.models.restoration.rrdbnet import RES_SCALE


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
    graph = NcnnGraph(layers)
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
    weights = read_convolution_weights(layers, bin_path)
    state: dict[str, np.ndarray] = {}
    for prefix, layer in mapping:
        state[f"{prefix}.weight"], state[f"{prefix}.bias"] = weights[layer.name]
    return config, state
