"""Import a TFLite flatbuffer as a native, differentiable torch module.

:func:`import_tflite` parses the graph with the ``tflite`` flatbuffer package (once, at fetch time)
into two parts:

* a JSON-able *spec* — the op list in execution order, each op with its type, activation-tensor ids,
  named parameters and options (padding, strides, fused activation, ...), plus the graph's inputs
  and outputs with their TFLite shapes;
* a *state* dict of float32 tensors, already in torch layout (conv weights ``OIHW``, depthwise
  weights ``(C*mult, 1, kh, kw)``, per-channel constants ``(C, 1, 1)``).

:func:`save_tflite_import` writes them as ``<stem>.json`` + ``<stem>.safetensors``;
:meth:`TFLiteModule.load` rebuilds the module from those two files without the ``tflite`` package.

Layout: TFLite activations are NHWC; inside :class:`TFLiteModule` every 4-D activation is
logically NCHW (torch convention; stored channels-last in memory, which is faster on CPU) and
ops with an axis (PAD, CONCATENATION, RESHAPE) translate it. Inputs are
given NCHW; 4-D outputs are returned NHWC again so their flat element order matches TFLite's.
The batch size is free (TFLite's batch 1 is not baked in). Everything is plain torch, so gradients
reach the inputs.

Supported ops: CONV_2D, DEPTHWISE_CONV_2D, MAX_POOL_2D, ADD, PRELU, PAD, RESHAPE, CONCATENATION,
RELU, RELU6, LOGISTIC, TANH, with fused activations NONE / RELU / RELU_N1_TO_1 / RELU6 / TANH and
TFLite SAME (asymmetric: the extra row/column goes after) or VALID padding. Any other op raises
:class:`UnsupportedTFLiteOpError` naming it, both when importing and when executing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np
import tflite
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from faceswap_pl.errors import UnsupportedTFLiteOpError

SPEC_FORMAT = "faceswap_pl.tflite_import/1"

# NHWC axis -> NCHW axis for 4-D activations
_NHWC_TO_NCHW_AXIS = (0, 2, 3, 1)


# ---------------------------------------------------------------------------------------------
# Execution: one function per op, all taking (inputs, params, options) and returning one tensor
# ---------------------------------------------------------------------------------------------

_ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "NONE": lambda x: x,
    "RELU": F.relu,
    "RELU_N1_TO_1": lambda x: x.clamp(-1.0, 1.0),
    "RELU6": lambda x: x.clamp(0.0, 6.0),
    "TANH": torch.tanh,
}


def _channels_last(x: torch.Tensor) -> torch.Tensor:
    """4-D tensors in channels-last memory order (NHWC in memory, NCHW logically).

    oneDNN runs these depthwise/1x1 convolutions faster channels-last than NCHW on CPU (whole
    MediaPipe graphs about 20-30 % at batch 8, single isolated convolutions up to ~15x), so the
    whole graph runs channels-last; ops that may return NCHW memory are converted back.
    """
    return x.contiguous(memory_format=torch.channels_last) if x.ndim == 4 else x


def _activate(x: torch.Tensor, options: dict) -> torch.Tensor:
    return _ACTIVATIONS[options.get("activation", "NONE")](x)


def _same_padding(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """TFLite/TensorFlow SAME padding (before, after) of one spatial axis; the odd pixel goes after."""
    out = -(-size // stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def _spatial_padding(x: torch.Tensor, kernel: tuple[int, int], options: dict) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) padding of an NCHW tensor for the op's padding mode."""
    if options["padding"] == "VALID":
        return 0, 0, 0, 0
    sh, sw = options["stride"]
    dh, dw = options.get("dilation", (1, 1))
    top, bottom = _same_padding(x.shape[2], kernel[0], sh, dh)
    left, right = _same_padding(x.shape[3], kernel[1], sw, dw)
    return top, bottom, left, right


def _conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, options: dict,
          groups: int) -> torch.Tensor:
    top, bottom, left, right = _spatial_padding(x, tuple(weight.shape[-2:]), options)
    if top == bottom and left == right:
        padding = (top, left)
    else:  # asymmetric SAME: pad explicitly (only the stride-2 layers, cheap)
        x = _channels_last(F.pad(x, (left, right, top, bottom)))
        padding = (0, 0)
    y = F.conv2d(x, weight, bias, stride=tuple(options["stride"]), padding=padding,
                 dilation=tuple(options.get("dilation", (1, 1))), groups=groups)
    return _activate(y, options)


def _op_conv2d(inputs, params, options):
    return _conv(inputs[0], params["weight"], params.get("bias"), options, groups=1)


def _op_depthwise_conv2d(inputs, params, options):
    x = inputs[0]
    return _conv(x, params["weight"], params.get("bias"), options, groups=x.shape[1])


def _op_max_pool2d(inputs, params, options):
    x = inputs[0]
    kernel = tuple(options["filter"])
    top, bottom, left, right = _spatial_padding(x, kernel, options)
    if top or bottom or left or right:  # TFLite ignores padded cells: pad with -inf
        x = _channels_last(F.pad(x, (left, right, top, bottom), value=float("-inf")))
    return _activate(F.max_pool2d(x, kernel, stride=tuple(options["stride"])), options)


def _op_add(inputs, params, options):
    operands = list(inputs) + ([params["other"]] if "other" in params else [])  # a constant operand
    return _activate(operands[0] + operands[1], options)


def _op_prelu(inputs, params, options):
    x, alpha = inputs[0], params["alpha"]
    if x.ndim == 4 and alpha.shape == (x.shape[1], 1, 1):
        return F.prelu(x, alpha.reshape(-1))  # per-channel: the fast kernel
    return torch.where(x >= 0, x, alpha * x)


def _op_pad(inputs, params, options):
    x = inputs[0]
    pads = [tuple(p) for p in options["paddings"]]  # TFLite axis order
    if x.ndim == 4:
        pads = [pads[a] for a in (0, 3, 1, 2)]  # NHWC -> NCHW
    flat: list[int] = []
    for before, after in reversed(pads):  # F.pad lists the last axis first
        flat += [before, after]
    return _channels_last(F.pad(x, flat))


def _op_reshape(inputs, params, options):
    x = inputs[0]
    if x.ndim == 4:
        x = x.permute(0, 2, 3, 1)  # back to TFLite's NHWC element order
    shape = list(options["shape"])
    shape[0] = x.shape[0]  # the batch is free
    y = x.reshape(shape)
    return y.permute(0, 3, 1, 2) if y.ndim == 4 else y  # a permuted NHWC tensor is channels-last


def _op_concatenation(inputs, params, options):
    axis = options["axis"]
    rank = inputs[0].ndim
    axis = axis % rank
    if rank == 4:
        axis = _NHWC_TO_NCHW_AXIS[axis]
    return _activate(torch.cat(inputs, dim=axis), options)


_OPS: dict[str, Callable[[list, dict, dict], torch.Tensor]] = {
    "CONV_2D": _op_conv2d,
    "DEPTHWISE_CONV_2D": _op_depthwise_conv2d,
    "MAX_POOL_2D": _op_max_pool2d,
    "ADD": _op_add,
    "PRELU": _op_prelu,
    "PAD": _op_pad,
    "RESHAPE": _op_reshape,
    "CONCATENATION": _op_concatenation,
    "RELU": lambda inputs, params, options: F.relu(inputs[0]),
    "RELU6": lambda inputs, params, options: inputs[0].clamp(0.0, 6.0),
    "LOGISTIC": lambda inputs, params, options: torch.sigmoid(inputs[0]),
    "TANH": lambda inputs, params, options: torch.tanh(inputs[0]),
}

SUPPORTED_OPS: tuple[str, ...] = tuple(sorted(_OPS))


def _unsupported(op_type: str, where: str) -> UnsupportedTFLiteOpError:
    return UnsupportedTFLiteOpError(
        f"TFLite op '{op_type}' {where} is not supported by faceswap_pl.models.importers.tflite; "
        f"supported ops: {', '.join(SUPPORTED_OPS)}."
    )


def run_op(op_type: str, inputs: list[torch.Tensor], params: dict[str, torch.Tensor],
           options: dict) -> torch.Tensor:
    """Execute one op in torch.

    Args:
        op_type: TFLite builtin op name, e.g. ``"CONV_2D"``.
        inputs: activation tensors (4-D ones NCHW).
        params: the op's constants in torch layout (e.g. ``weight``, ``bias``, ``alpha``).
        options: the op's options as stored in the spec.
    Returns:
        The op's output (4-D outputs NCHW).
    Raises:
        UnsupportedTFLiteOpError: ``op_type`` is not implemented.
    """
    fn = _OPS.get(op_type)
    if fn is None:
        raise _unsupported(op_type, "in the graph")
    return fn(inputs, params, options)


# ---------------------------------------------------------------------------------------------
# Parsing: flatbuffer -> (spec, state)
# ---------------------------------------------------------------------------------------------

def _enum_names(enum_cls) -> dict[int, str]:
    return {v: k for k, v in vars(enum_cls).items() if not k.startswith("_") and isinstance(v, int)}


def _nhwc_constant_to_torch(arr: np.ndarray) -> np.ndarray:
    """A constant broadcast against NHWC activations, re-laid out to broadcast against NCHW.

    ``(C,)`` and ``(1, 1, C)`` become ``(C, 1, 1)``; ``(H, W, C)`` becomes ``(C, H, W)``;
    ``(N, H, W, C)`` becomes ``(N, C, H, W)``; scalars stay scalars.
    """
    if arr.ndim == 0:
        return arr
    if arr.ndim == 1:
        return arr.reshape(-1, 1, 1)
    if arr.ndim == 3:
        return arr.transpose(2, 0, 1)
    if arr.ndim == 4:
        return arr.transpose(0, 3, 1, 2)
    raise UnsupportedTFLiteOpError(f"cannot broadcast a rank-{arr.ndim} TFLite constant against NHWC activations")


class _Graph:
    """Thin reader over one subgraph of a TFLite model (tensors, constants, options)."""

    _NP_TYPES = {"FLOAT32": np.float32, "INT32": np.int32, "INT64": np.int64, "FLOAT16": np.float16}

    def __init__(self, data: bytes):
        self.tflite = tflite
        self.data = data
        self.model = tflite.Model.GetRootAsModel(data, 0)
        if self.model.SubgraphsLength() != 1:
            raise UnsupportedTFLiteOpError(
                f"only single-subgraph TFLite models are supported, this one has {self.model.SubgraphsLength()}"
            )
        self.graph = self.model.Subgraphs(0)
        self.op_names = _enum_names(tflite.BuiltinOperator)
        self.type_names = _enum_names(tflite.TensorType)
        self.act_names = _enum_names(tflite.ActivationFunctionType)
        self.pad_names = _enum_names(tflite.Padding)

    def op_type(self, op) -> str:
        code = self.model.OperatorCodes(op.OpcodeIndex())
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        name = self.op_names.get(builtin, f"BUILTIN_{builtin}")
        if name == "CUSTOM":
            name = f"CUSTOM:{code.CustomCode().decode()}"
        return name

    def shape(self, idx: int) -> list[int]:
        return [int(v) for v in self.graph.Tensors(idx).ShapeAsNumpy()]

    def constant(self, idx: int) -> np.ndarray | None:
        """The constant data of tensor ``idx`` as a numpy array, or None for an activation."""
        tensor = self.graph.Tensors(idx)
        buffer = self.model.Buffers(tensor.Buffer())
        raw: bytes | None = None
        if buffer.DataLength() > 0:
            raw = buffer.DataAsNumpy().tobytes()
        elif buffer.Offset() > 1:  # large models keep buffers after the flatbuffer
            raw = self.data[buffer.Offset():buffer.Offset() + buffer.Size()]
        if raw is None:
            return None
        type_name = self.type_names.get(tensor.Type(), str(tensor.Type()))
        if type_name not in self._NP_TYPES or tensor.Quantization() is not None and tensor.Quantization().ScaleLength():
            raise UnsupportedTFLiteOpError(
                f"TFLite constant '{tensor.Name().decode()}' has type {type_name}"
                f"{' (quantised)' if type_name in self._NP_TYPES else ''}; only float/int constants are supported"
            )
        return np.frombuffer(raw, dtype=self._NP_TYPES[type_name]).reshape(self.shape(idx)).copy()

    def options(self, op, cls):
        table = op.BuiltinOptions()
        opts = cls()
        if table is not None:
            opts.Init(table.Bytes, table.Pos)
        return opts

    def activation(self, opts) -> str:
        name = self.act_names.get(opts.FusedActivationFunction(), "?")
        if name not in _ACTIVATIONS:
            raise UnsupportedTFLiteOpError(f"fused activation '{name}' is not supported")
        return name


def _parse_op(g: _Graph, op, op_type: str) -> tuple[list[int], dict[str, np.ndarray], dict]:
    """Split one op's inputs into activations and torch-layout parameters; read its options."""
    tfl = g.tflite
    ids = [int(i) for i in op.InputsAsNumpy()]
    consts = {i: g.constant(i) for i in ids if i >= 0}
    acts = [i for i in ids if i >= 0 and consts[i] is None]
    params: dict[str, np.ndarray] = {}
    options: dict = {}
    if op_type in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        is_dw = op_type == "DEPTHWISE_CONV_2D"
        opts = g.options(op, tfl.DepthwiseConv2DOptions if is_dw else tfl.Conv2DOptions)
        weight = consts[ids[1]]  # CONV: (O, kh, kw, I); DEPTHWISE: (1, kh, kw, C*mult)
        params["weight"] = weight.transpose(3, 0, 1, 2) if is_dw else weight.transpose(0, 3, 1, 2)
        if len(ids) > 2 and ids[2] >= 0:
            params["bias"] = consts[ids[2]]
        options = {
            "padding": g.pad_names[opts.Padding()],
            "stride": [opts.StrideH(), opts.StrideW()],
            "dilation": [opts.DilationHFactor(), opts.DilationWFactor()],
            "activation": g.activation(opts),
        }
        acts = ids[:1]
    elif op_type == "MAX_POOL_2D":
        opts = g.options(op, tfl.Pool2DOptions)
        options = {
            "padding": g.pad_names[opts.Padding()],
            "stride": [opts.StrideH(), opts.StrideW()],
            "filter": [opts.FilterHeight(), opts.FilterWidth()],
            "activation": g.activation(opts),
        }
    elif op_type == "ADD":
        options = {"activation": g.activation(g.options(op, tfl.AddOptions))}
        const_ids = [i for i in ids if consts[i] is not None]
        if len(const_ids) > 1:
            raise UnsupportedTFLiteOpError("ADD of two constants is not supported (fold it first)")
        if const_ids:
            params["other"] = _nhwc_constant_to_torch(consts[const_ids[0]].astype(np.float32))
    elif op_type == "PRELU":
        params["alpha"] = _nhwc_constant_to_torch(consts[ids[1]])
        acts = ids[:1]
    elif op_type == "PAD":
        options = {"paddings": consts[ids[1]].astype(int).tolist()}
        acts = ids[:1]
    elif op_type == "RESHAPE":
        options = {"shape": g.shape(int(op.OutputsAsNumpy()[0]))}
        acts = ids[:1]
    elif op_type == "CONCATENATION":
        opts = g.options(op, tfl.ConcatenationOptions)
        options = {"axis": opts.Axis(), "activation": g.activation(opts)}
        if len(acts) != len(ids):
            raise UnsupportedTFLiteOpError("CONCATENATION with constant inputs is not supported")
    elif op_type not in _OPS:
        raise _unsupported(op_type, "in the graph")
    return acts, params, options


def import_tflite(path: str | Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """Parse a float TFLite model into a JSON-able spec and a torch-layout state dict.

    Args:
        path: the ``.tflite`` file (single subgraph, float32 weights).
    Returns:
        ``(spec, state)``: ``spec`` holds ``format``, ``source``, ``description``, ``inputs`` /
        ``outputs`` (``{"id", "name", "shape"}`` with TFLite NHWC shapes) and ``ops`` (``{"type",
        "inputs", "outputs", "params", "options"}``, ``params`` mapping a role to a state key);
        ``state`` maps keys like ``"op007_weight"`` to float32 tensors.
    Raises:
        UnsupportedTFLiteOpError: an op, activation or constant type is not supported.
    """
    path = Path(path)
    g = _Graph(path.read_bytes())
    graph = g.graph

    def io(idx: int) -> dict:
        return {"id": idx, "name": graph.Tensors(idx).Name().decode(), "shape": g.shape(idx)}

    ops: list[dict] = []
    state: dict[str, torch.Tensor] = {}
    for n in range(graph.OperatorsLength()):
        op = graph.Operators(n)
        op_type = g.op_type(op)
        acts, params, options = _parse_op(g, op, op_type)
        keys = {}
        for role, arr in params.items():
            key = f"op{n:03d}_{role}"
            state[key] = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
            keys[role] = key
        ops.append({"type": op_type, "inputs": acts, "outputs": [int(i) for i in op.OutputsAsNumpy()],
                    "params": keys, "options": options})
    description = g.model.Description()
    spec = {
        "format": SPEC_FORMAT,
        "source": path.name,
        "description": description.decode() if description else "",
        "inputs": [io(int(i)) for i in graph.InputsAsNumpy()],
        "outputs": [io(int(i)) for i in graph.OutputsAsNumpy()],
        "ops": ops,
    }
    return spec, state


def save_tflite_import(tflite_path: str | Path, out_dir: str | Path, stem: str) -> tuple[Path, Path]:
    """Import ``tflite_path`` and write ``out_dir/<stem>.json`` and ``out_dir/<stem>.safetensors``."""
    spec, state = import_tflite(tflite_path)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    spec_path, weights_path = out_dir / f"{stem}.json", out_dir / f"{stem}.safetensors"
    spec_path.write_text(json.dumps(spec, indent=None, separators=(",", ":")))
    save_file(state, str(weights_path))
    return spec_path, weights_path


# ---------------------------------------------------------------------------------------------
# The module
# ---------------------------------------------------------------------------------------------

class TFLiteModule(nn.Module):
    """Executes an imported TFLite graph in torch.

    ``forward(*inputs)``: one tensor per graph input, 4-D ones NCHW (e.g. (N, 3, 192, 192)) in the
    value range the TFLite model expects; returns a tuple with one tensor per graph output in
    TFLite layout with the batch dimension N (4-D outputs NHWC). Weights are ``nn.Parameter`` s in
    ``self.params`` (freeze them with ``requires_grad_(False)``).
    """

    def __init__(self, spec: dict, state: dict[str, torch.Tensor]):
        super().__init__()
        if spec.get("format") != SPEC_FORMAT:
            raise ValueError(f"not a {SPEC_FORMAT} spec (format={spec.get('format')!r})")
        for op in spec["ops"]:
            if op["type"] not in _OPS:
                raise _unsupported(op["type"], f"in {spec.get('source', 'the spec')}")
        self.spec = spec
        self.params = nn.ParameterDict(
            {key: nn.Parameter(_channels_last(value.float().clone())) for key, value in state.items()}
        )
        self._input_ids = [t["id"] for t in spec["inputs"]]
        self._output_ids = [t["id"] for t in spec["outputs"]]
        # free intermediate activations after their last use
        last_use: dict[int, int] = {}
        for n, op in enumerate(spec["ops"]):
            for i in op["inputs"]:
                last_use[i] = n
        keep = set(self._output_ids)
        self._free_after = [[i for i in set(op["inputs"]) if last_use[i] == n and i not in keep]
                            for n, op in enumerate(spec["ops"])]

    @classmethod
    def load(cls, spec_path: str | Path, weights_path: str | Path | None = None) -> "TFLiteModule":
        """Rebuild from ``<stem>.json`` (and ``<stem>.safetensors`` next to it unless given)."""
        spec_path = Path(spec_path)
        weights_path = Path(weights_path) if weights_path else spec_path.with_suffix(".safetensors")
        return cls(json.loads(spec_path.read_text()), load_file(str(weights_path)))

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if len(inputs) != len(self._input_ids):
            raise ValueError(f"{self.spec['source']} takes {len(self._input_ids)} input(s), got {len(inputs)}")
        env: dict[int, torch.Tensor] = {i: _channels_last(x) for i, x in zip(self._input_ids, inputs)}
        for op, free in zip(self.spec["ops"], self._free_after):
            params = {role: self.params[key] for role, key in op["params"].items()}
            env[op["outputs"][0]] = run_op(op["type"], [env[i] for i in op["inputs"]], params, op["options"])
            for i in free:
                del env[i]
        outs = [env[i] for i in self._output_ids]
        return tuple(o.permute(0, 2, 3, 1) if o.ndim == 4 else o for o in outs)
