"""Shared ONNX tools: fold quantised weights, build torch modules, make quiet onnxruntime sessions.

Three jobs, used by every adapter that starts from an ONNX file:

1. :func:`fold_constants` / :func:`load_folded` rewrite a graph so that both onnxruntime and
   onnx2torch run it. The OpenCV zoo's ``int8bq`` files (SFace, YuNet) keep their weights as int8
   tensors dequantised in the graph by ``DequantizeLinear`` with ``block_size`` (opset 21), declare
   the original fp32 weights as dangling graph inputs, and hold scalars in opset-21 ``Constant``
   nodes; onnxruntime demands values for the dangling inputs ("Required inputs ... are missing")
   and onnx2torch has no converter for block dequantisation nor for the opset-21 ``Constant``.
   Folding computes the fp32 weights once, stores them as initializers and drops the dead inputs,
   so the result is a plain fp32 graph.
2. :func:`onnx_to_torch` converts a (folded) graph to an ``nn.Module`` with onnx2torch (lowering
   opsets above 17 first) and swaps onnx2torch's PReLU for ``nn.PReLU`` (same numbers, one fused
   kernel; also fixes onnx2torch's per-channel reading of (C, 1) slopes, see :func:`replace_prelu`).
3. :func:`ort_session` builds an onnxruntime session with one intra-op thread and no spinning: ORT's
   default spinning thread pools slowed torch 10-40x on 2 cores when both ran in one process.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import helper, numpy_helper, version_converter
from torch import fx, nn

from faceswap_pl.errors import ModelFileError

# ops whose outputs are folded into initializers when every input is already a constant
FOLDABLE_OPS = ("DequantizeLinear", "Reshape", "Identity", "Cast")
# newest default-domain opset onnx2torch 1.5 has converters for; newer graphs are converted down
TORCH_MAX_OPSET = 17


def load_user_onnx(path: str | Path, what: str = "ONNX model") -> onnx.ModelProto:
    """Load a user-supplied ONNX file, raising :class:`ModelFileError` naming the path on failure."""
    file = Path(path).expanduser()
    if not file.is_file():
        where = "is a directory, not a file" if file.is_dir() else "does not exist"
        raise ModelFileError(f"The {what} '{file}' {where}; pass the path of an existing .onnx file.")
    try:
        return onnx.load(str(file))
    except Exception as exc:  # DecodeError, OSError, ...
        raise ModelFileError(f"The {what} '{file}' could not be read as ONNX "
                             f"({type(exc).__name__}: {exc}).") from exc


# --------------------------------------------------------------------------------------------------
# folding


def _as_model(model: str | Path | onnx.ModelProto) -> onnx.ModelProto:
    """Load a model from a path, or copy a ``ModelProto`` (callers never mutate the argument)."""
    if isinstance(model, onnx.ModelProto):
        copy = onnx.ModelProto()
        copy.CopyFrom(model)
        return copy
    return onnx.load(str(model))


def dequantize_linear(x: np.ndarray, scale: np.ndarray, zero_point: np.ndarray | None = None,
                      axis: int = 1, block_size: int = 0) -> np.ndarray:
    """ONNX ``DequantizeLinear`` (opset 21 semantics) in numpy: ``(x - zero_point) * scale``.

    Args:
        x: quantised tensor of any shape (int8 / uint8 / int32 ...).
        scale: scalar (per tensor), 1-D of length ``x.shape[axis]`` (per axis), or — with
            ``block_size > 0`` — the shape of ``x`` with ``ceil(x.shape[axis] / block_size)`` along
            ``axis`` (blocked: element ``i`` along ``axis`` uses block ``i // block_size``).
        zero_point: same shape as ``scale`` or None (zero).
        axis: the quantisation axis (negative counts from the end).
        block_size: 0 for per-tensor / per-axis, else the block length along ``axis``.
    Returns:
        Array of ``x``'s shape in ``scale``'s dtype.
    """
    scale = np.asarray(scale)
    zp = np.zeros_like(scale, dtype=np.int64) if zero_point is None else np.asarray(zero_point)
    axis = axis % max(x.ndim, 1)
    if block_size > 0:
        length = x.shape[axis]
        scale = np.repeat(scale, block_size, axis=axis).take(np.arange(length), axis=axis)
        zp = np.repeat(zp, block_size, axis=axis).take(np.arange(length), axis=axis)
    elif scale.ndim == 1 and x.ndim > 0:
        shape = [1] * x.ndim
        shape[axis] = -1
        scale, zp = scale.reshape(shape), zp.reshape(shape)
    values = x.astype(np.float64) - zp.astype(np.float64)
    return (values * scale.astype(np.float64)).astype(scale.dtype)


def _onnx_reshape(data: np.ndarray, shape: np.ndarray, allowzero: int) -> np.ndarray:
    """ONNX ``Reshape``: a 0 copies the input dimension (unless ``allowzero``), -1 is inferred."""
    target = [int(s) for s in shape]
    if not allowzero:
        target = [data.shape[i] if s == 0 else s for i, s in enumerate(target)]
    return data.reshape(target)


def _evaluate(node: onnx.NodeProto, inputs: list[np.ndarray | None]) -> np.ndarray:
    """Value of one foldable node given its constant inputs (missing optional inputs are None)."""
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    if node.op_type == "DequantizeLinear":
        x, scale = inputs[0], inputs[1]
        zero_point = inputs[2] if len(inputs) > 2 else None
        out = dequantize_linear(x, scale, zero_point, int(attrs.get("axis", 1)), int(attrs.get("block_size", 0)))
        if "output_dtype" in attrs and attrs["output_dtype"]:
            out = out.astype(helper.tensor_dtype_to_np_dtype(attrs["output_dtype"]))
        return out
    if node.op_type == "Reshape":
        return _onnx_reshape(inputs[0], inputs[1], int(attrs.get("allowzero", 0)))
    if node.op_type == "Identity":
        return inputs[0]
    if node.op_type == "Cast":
        return inputs[0].astype(helper.tensor_dtype_to_np_dtype(attrs["to"]))
    raise ValueError(f"cannot fold op {node.op_type}")


def _constant_value(node: onnx.NodeProto) -> np.ndarray:
    """The tensor held by a ``Constant`` node (any of its value attribute forms)."""
    attr = node.attribute[0]
    value = helper.get_attribute_value(attr)
    if attr.name == "value":
        return numpy_helper.to_array(value)
    if attr.name == "value_float":
        return np.array(value, dtype=np.float32)
    if attr.name == "value_floats":
        return np.array(value, dtype=np.float32)
    if attr.name == "value_int":
        return np.array(value, dtype=np.int64)
    if attr.name == "value_ints":
        return np.array(value, dtype=np.int64)
    raise ValueError(f"unsupported Constant attribute '{attr.name}' in node '{node.name}'")


def _names_read(nodes: Iterable[onnx.NodeProto]) -> set[str]:
    """Every tensor name the nodes read, including outer-scope names read inside subgraphs (If/Loop)."""
    names: set[str] = set()
    for node in nodes:
        names.update(node.input)
        for attr in node.attribute:
            subgraphs = [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)
            for sub in subgraphs:
                names |= _names_read(sub.node)
    return names


def fold_constants(model: str | Path | onnx.ModelProto, dynamic_batch: bool = True) -> onnx.ModelProto:
    """Return a copy of ``model`` with quantised weights folded to fp32 initializers.

    * ``Constant`` nodes become initializers;
    * ``DequantizeLinear`` (incl. opset-21 ``block_size``), ``Reshape``, ``Identity`` and ``Cast``
      nodes whose inputs are all constants are evaluated once and replaced by their output;
    * graph inputs that no node reads, or that are initializers, are removed; unused initializers
      are dropped; stale ``value_info`` is cleared and shapes are re-inferred;
    * with ``dynamic_batch``, dim 0 of the graph inputs and outputs becomes the symbol ``N``.

    The opset is left as it was: the remaining ops (Conv, BatchNormalization, PRelu, Gemm ...) have
    the same semantics in opset 21 as in the versions onnx2torch knows.
    """
    model = _as_model(model)
    graph = model.graph
    consts: dict[str, np.ndarray] = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    kept: list[onnx.NodeProto] = []
    for node in graph.node:
        if node.op_type == "Constant":
            consts[node.output[0]] = _constant_value(node)
            continue
        if node.op_type in FOLDABLE_OPS and all(not name or name in consts for name in node.input):
            inputs = [consts[name] if name else None for name in node.input]
            consts[node.output[0]] = _evaluate(node, inputs)
            continue
        kept.append(node)

    used = _names_read(kept) | {out.name for out in graph.output}
    del graph.node[:]
    graph.node.extend(kept)
    del graph.initializer[:]
    graph.initializer.extend(numpy_helper.from_array(value, name) for name, value in consts.items() if name in used)
    live_inputs = [inp for inp in graph.input if inp.name in used and inp.name not in consts]
    del graph.input[:]
    graph.input.extend(live_inputs)
    del graph.value_info[:]
    if dynamic_batch:
        for value in list(graph.input) + list(graph.output):
            dims = value.type.tensor_type.shape.dim
            if len(dims):
                dims[0].Clear()
                dims[0].dim_param = "N"
    model = onnx.shape_inference.infer_shapes(model)
    onnx.checker.check_model(model)
    return model


def load_folded(path: str | Path, dynamic_batch: bool = True) -> onnx.ModelProto:
    """Load an ONNX file and :func:`fold_constants` it (a no-op for an already plain fp32 graph)."""
    return fold_constants(onnx.load(str(path)), dynamic_batch=dynamic_batch)


# --------------------------------------------------------------------------------------------------
# torch


def _initializer_value(module: fx.GraphModule, node: fx.Node) -> torch.Tensor | None:
    """The tensor behind an fx ``get_attr`` node (onnx2torch keeps initializers as buffers)."""
    if not isinstance(node, fx.Node) or node.op != "get_attr":
        return None
    value: object = module
    for part in str(node.target).split("."):
        value = getattr(value, part)
    return value if isinstance(value, torch.Tensor) else None


def _tensor_ranks(model: onnx.ModelProto) -> dict[str, int]:
    """Rank of every graph tensor whose shape ONNX shape inference knows."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # shape inference is best effort; unknown ranks just keep onnx2torch's PReLU
        inferred = model
    graph = inferred.graph
    ranks = {}
    for value in list(graph.input) + list(graph.value_info) + list(graph.output):
        tensor_type = value.type.tensor_type
        if tensor_type.HasField("shape"):
            ranks[value.name] = len(tensor_type.shape.dim)
    return ranks


def _channel_count(slope_shape: tuple[int, ...], input_rank: int | None) -> int | None:
    """C if an ONNX PRelu slope of this shape acts per channel (dim 1) on an input of ``input_rank``.

    ONNX broadcasts the slope against the input from the right, so (C, 1, 1) is per channel on
    (N, C, H, W) but (C, 1) would act on H and (C,) on W. A single value is a shared slope.
    """
    numel = int(np.prod(slope_shape)) if slope_shape else 1
    if numel == 1:
        return 1
    if input_rank is None or input_rank < 2 or len(slope_shape) > input_rank:
        return None
    padded = (1,) * (input_rank - len(slope_shape)) + tuple(slope_shape)
    return numel if padded[1] == numel else None


class BroadcastPReLU(nn.Module):
    """ONNX ``PRelu`` with a constant slope that is not per channel: ``x if x >= 0 else x * slope``.

    The slope (any shape broadcastable to the input, ONNX / numpy rules) is a frozen buffer.
    """

    def __init__(self, slope: torch.Tensor):
        super().__init__()
        self.register_buffer("slope", slope.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.where(x >= 0, x, x * self.slope)


def replace_prelu(module: fx.GraphModule, input_ranks: dict[str, int] | None = None) -> int:
    """Swap onnx2torch's ``OnnxPReLU(x, slope)`` for ``nn.PReLU`` (or :class:`BroadcastPReLU`).

    onnx2torch passes the slope as a second input; it treats any slope shaped (C, 1, ..., 1) as per
    channel when C matches dim 1 of the input (wrong under ONNX broadcasting for e.g. (C, 1) on a 4-D
    input, which acts on H) and otherwise falls back to a slow masked, indexed multiply. Here a
    constant slope becomes ``nn.PReLU`` (one fused kernel, the slope as its weight) when ONNX
    broadcasting makes it per channel or single-valued (see :func:`_channel_count`), else a
    :class:`BroadcastPReLU`. Deciding "per channel" needs the input's rank: ``input_ranks`` maps ONNX
    tensor names to ranks, and the module must come from ``convert(..., attach_onnx_mapping=True)``
    (as :func:`onnx_to_torch` does); without them only single-valued slopes become ``nn.PReLU``.

    Returns:
        The number of PReLU nodes replaced (the module is changed in place and recompiled).
    """
    from onnx2torch.node_converters.activations import OnnxPReLU

    input_ranks = input_ranks or {}
    replaced = 0
    for node in list(module.graph.nodes):
        if node.op != "call_module" or len(node.args) != 2:
            continue
        old = module.get_submodule(str(node.target))
        if not isinstance(old, OnnxPReLU):
            continue
        slope = _initializer_value(module, node.args[1])
        if slope is None:
            continue
        mapping = getattr(old, "onnx_mapping", None)
        rank = input_ranks.get(mapping.inputs[0]) if mapping is not None else None
        channels = _channel_count(tuple(slope.shape), rank)
        if channels is None:
            prelu = BroadcastPReLU(slope)
        else:
            prelu = nn.PReLU(num_parameters=channels)
            with torch.no_grad():
                prelu.weight.copy_(slope.reshape(-1).to(prelu.weight.dtype))
        name = f"{str(node.target).replace('.', '_')}_prelu"
        module.add_submodule(name, prelu)
        with module.graph.inserting_after(node):
            new = module.graph.call_module(name, args=(node.args[0],))
        node.replace_all_uses_with(new)
        module.graph.erase_node(node)
        replaced += 1
    if replaced:
        module.graph.eliminate_dead_code()
        module.delete_all_unused_submodules()
        module.recompile()
    return replaced


def downgrade_opset(model: onnx.ModelProto, target: int = TORCH_MAX_OPSET) -> onnx.ModelProto:
    """Return ``model`` converted down to opset ``target`` if it declares a newer default opset.

    onnx2torch looks converters up by the op's ``since_version`` at the model's opset, so an op that
    was only re-declared in a newer opset (e.g. ``Flatten``-21, which just widened its types) is
    "not implemented" although the maths is unchanged. ONNX's version converter rewrites the graph
    to the older opset (it refuses where semantics really changed).
    """
    version = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), target)
    if version <= target:
        return model

    try:
        return version_converter.convert_version(model, target)
    except Exception as exc:  # the converter raises bare RuntimeErrors / assertion messages
        raise ValueError(f"cannot convert the ONNX graph from opset {version} to {target} "
                         f"for onnx2torch: {exc}") from exc


def onnx_to_torch(model: str | Path | onnx.ModelProto, fold: bool = True) -> nn.Module:
    """Convert an ONNX graph to a torch module (eval mode) with onnx2torch.

    Args:
        model: path of an ``.onnx`` file or a ``ModelProto``.
        fold: run :func:`fold_constants` first (needed for int8bq / opset-21 ``Constant`` graphs;
            harmless for plain fp32 graphs).
    Returns:
        An ``fx.GraphModule`` whose forward takes the graph inputs positionally (NCHW float32
        tensors for image models) and returns the output (a tuple if the graph has several).
    """
    from onnx2torch import convert

    proto = downgrade_opset(fold_constants(model) if fold else _as_model(model))
    module = convert(proto, attach_onnx_mapping=True)
    replace_prelu(module, _tensor_ranks(proto))
    return module.eval()


# --------------------------------------------------------------------------------------------------
# onnxruntime


def ort_session_options(threads: int = 1):
    """``onnxruntime.SessionOptions`` that do not fight torch for the CPU.

    Intra-op threads limited to ``threads``, one inter-op thread, spinning disabled for both pools,
    sequential execution, only errors logged.
    """
    options = ort.SessionOptions()
    options.intra_op_num_threads = int(threads)
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    options.log_severity_level = 3
    return options


def ort_session(model: str | Path | onnx.ModelProto | bytes, threads: int = 1,
                providers: Iterable[str] = ("CPUExecutionProvider",)):
    """An ``onnxruntime.InferenceSession`` built with :func:`ort_session_options` (quiet, 1 thread).

    Args:
        model: path, ``ModelProto`` or serialised bytes.
        threads: intra-op threads.
        providers: execution providers, CPU by default.
    """
    if isinstance(model, onnx.ModelProto):
        model = model.SerializeToString()
    elif isinstance(model, Path):
        model = str(model)
    return ort.InferenceSession(model, sess_options=ort_session_options(threads), providers=list(providers))
