"""ONNX import tools (folding, PReLU swap) and the ``onnx:<path>`` identity encoder vs insightface."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from conftest import need, read_rgb
from onnx import TensorProto, helper, numpy_helper

from faceswap_pl.errors import FaceSwapError, ModelFileError
from faceswap_pl.models.identity import create_identity_encoder
from faceswap_pl.models.importers.onnx import (
    BroadcastPReLU,
    dequantize_linear,
    fold_constants,
    onnx_to_torch,
    ort_session,
)


def tiny_recognizer(path: Path, dim: int = 16, seed: int = 0) -> Path:
    """Write a small random insightface-style recognizer: (N, 3, 112, 112) -> (N, dim), opset 13.

    Conv(stride 4) -> BatchNorm -> PRelu (slope (C, 1, 1), as insightface exports) -> Conv(stride 4)
    -> PRelu -> GlobalAveragePool -> Flatten -> Gemm. No Sub/Mul at the start, so insightface
    normalises its input with mean 127.5 / std 127.5.
    """
    rng = np.random.default_rng(seed)

    def init(name, *shape, scale=0.3):
        return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name)

    inits = [
        init("w1", 8, 3, 4, 4), init("b1", 8), init("gamma", 8), init("beta", 8), init("mean", 8),
        numpy_helper.from_array(rng.uniform(0.5, 2.0, 8).astype(np.float32), "var"),
        numpy_helper.from_array(np.full((8, 1, 1), 0.25, np.float32), "slope1"),
        init("w2", 12, 8, 4, 4), init("b2", 12),
        numpy_helper.from_array(rng.uniform(-0.5, 0.5, (12, 1, 1)).astype(np.float32), "slope2"),
        init("fc_w", dim, 12), init("fc_b", dim),
    ]
    nodes = [
        helper.make_node("Conv", ["input.1", "w1", "b1"], ["c1"], name="Conv_0", strides=[4, 4], kernel_shape=[4, 4]),
        helper.make_node("BatchNormalization", ["c1", "gamma", "beta", "mean", "var"], ["n1"],
                         name="BatchNormalization_1"),
        helper.make_node("PRelu", ["n1", "slope1"], ["p1"], name="PRelu_2"),
        helper.make_node("Conv", ["p1", "w2", "b2"], ["c2"], name="Conv_3", strides=[4, 4], kernel_shape=[4, 4]),
        helper.make_node("PRelu", ["c2", "slope2"], ["p2"], name="PRelu_4"),
        helper.make_node("GlobalAveragePool", ["p2"], ["g"], name="GlobalAveragePool_5"),
        helper.make_node("Flatten", ["g"], ["f"], name="Flatten_6"),
        helper.make_node("Gemm", ["f", "fc_w", "fc_b"], ["683"], name="Gemm_7", transB=1),
    ]
    graph = helper.make_graph(
        nodes, "tiny_recognizer",
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, ["None", 3, 112, 112])],
        [helper.make_tensor_value_info("683", TensorProto.FLOAT, ["None", dim])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def _random_faces(n: int, size: int = 112, seed: int = 1) -> np.ndarray:
    """(n, size, size, 3) uint8 RGB noise with some smooth structure."""
    rng = np.random.default_rng(seed)
    low = rng.integers(0, 256, (n, size // 8, size // 8, 3)).astype(np.float32)
    smooth = np.repeat(np.repeat(low, 8, axis=1), 8, axis=2)
    return np.clip(smooth + rng.normal(0, 20, smooth.shape), 0, 255).astype(np.uint8)


def _to_model_input(images_rgb: np.ndarray) -> torch.Tensor:
    """(N, H, W, 3) uint8 RGB -> (N, 3, H, W) float in [-1, 1], the IdentityEncoder input."""
    return torch.from_numpy(images_rgb).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def _insightface_features(path: Path, images_rgb: np.ndarray) -> np.ndarray:
    """Raw features from insightface's own ArcFaceONNX (which takes BGR crops)."""
    from insightface.model_zoo.arcface_onnx import ArcFaceONNX

    recognizer = ArcFaceONNX(model_file=str(path), session=ort_session(path))
    return recognizer.get_feat([np.ascontiguousarray(img[:, :, ::-1]) for img in images_rgb])


# ------------------------------------------------------------------------------------------------
# folding


def _reference(model: onnx.ModelProto, feeds: dict) -> list[np.ndarray]:
    from onnx.reference import ReferenceEvaluator

    return ReferenceEvaluator(model).run(None, feeds)


@pytest.mark.parametrize("axis, block", [(1, 4), (0, 3), (1, 0)])
def test_dequantize_linear_matches_onnx_reference(axis, block):
    rng = np.random.default_rng(0)
    x = rng.integers(-128, 128, (6, 10)).astype(np.int8)
    if block:
        shape = list(x.shape)
        shape[axis] = -(-shape[axis] // block)  # ceil: 10 / 4 leaves a partial block
    else:
        shape = [x.shape[axis]]
    scale = rng.uniform(0.001, 0.1, shape).astype(np.float32)
    zero = rng.integers(-5, 5, shape).astype(np.int8)
    extra = {"block_size": block} if block else {}
    node = helper.make_node("DequantizeLinear", ["x", "s", "z"], ["y"], axis=axis, **extra)
    graph = helper.make_graph([node], "dq", [], [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(a, n) for a, n in ((x, "x"), (scale, "s"), (zero, "z"))])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    expected = _reference(model, {})[0]
    np.testing.assert_allclose(dequantize_linear(x, scale, zero, axis, block), expected, rtol=1e-6, atol=0)


def _block_quantised_conv() -> onnx.ModelProto:
    """An int8bq-style graph: DequantizeLinear(block_size) -> Reshape -> Conv, a Constant scalar, a
    dangling weight graph input and opset 21, as in the OpenCV zoo files."""
    rng = np.random.default_rng(3)
    q = rng.integers(-128, 128, (4, 27)).astype(np.int8)
    scale = rng.uniform(0.005, 0.02, (4, 3)).astype(np.float32)
    zero = np.zeros((4, 3), np.int8)
    nodes = [
        helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["wd"], axis=1, block_size=9),
        helper.make_node("Reshape", ["wd", "wshape"], ["w"]),
        helper.make_node("Constant", [], ["k"], value=numpy_helper.from_array(np.array(0.5, np.float32))),
        helper.make_node("Mul", ["data", "k"], ["scaled"]),
        helper.make_node("Conv", ["scaled", "w"], ["y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
    ]
    graph = helper.make_graph(
        nodes, "bq",
        [helper.make_tensor_value_info("data", TensorProto.FLOAT, [1, 3, 8, 8]),
         helper.make_tensor_value_info("w_unused", TensorProto.FLOAT, [4, 3, 3, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])],
        [numpy_helper.from_array(q, "wq"), numpy_helper.from_array(scale, "ws"), numpy_helper.from_array(zero, "wz"),
         numpy_helper.from_array(np.array([4, 3, 3, 3], np.int64), "wshape")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])


def test_fold_constants_keeps_results_and_runs_everywhere():
    raw = _block_quantised_conv()
    x = np.random.default_rng(4).standard_normal((2, 3, 8, 8)).astype(np.float32)
    expected = np.concatenate([_reference(raw, {"data": x[i:i + 1], "w_unused": np.zeros((4, 3, 3, 3), np.float32)})[0]
                               for i in range(2)])
    folded = fold_constants(raw)
    assert [n.op_type for n in folded.graph.node] == ["Mul", "Conv"]
    assert [i.name for i in folded.graph.input] == ["data"]
    assert folded.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "N"
    ort_out = ort_session(folded).run(None, {"data": x})[0]
    np.testing.assert_allclose(ort_out, expected, atol=1e-5)
    with torch.no_grad():
        torch_out = onnx_to_torch(raw)(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(torch_out, expected, atol=1e-5)


@pytest.mark.parametrize("slope_shape, swapped", [((4, 1, 1), True), ((1, 4, 1, 1), True), ((1,), True),
                                                  ((4, 1), False), ((4,), False)])
def test_prelu_swap_follows_onnx_broadcasting(slope_shape, swapped):
    """(4, 1) acts on H and (4,) on W of a (N, 4, 4, 4) input: those must not become per-channel
    (onnx2torch's own PReLU gets (4, 1) wrong: it applies it per channel)."""
    slope = np.linspace(-0.5, 0.9, int(np.prod(slope_shape))).astype(np.float32).reshape(slope_shape)
    graph = helper.make_graph(
        [helper.make_node("PRelu", ["x", "slope"], ["y"], name="act")], "prelu",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, 4, 4])],
        [numpy_helper.from_array(slope, "slope")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 16)])
    x = np.random.default_rng(5).standard_normal((2, 4, 4, 4)).astype(np.float32)
    expected = ort_session(model).run(None, {"x": x})[0]
    module = onnx_to_torch(model)
    assert any(isinstance(m, torch.nn.PReLU) for m in module.modules()) == swapped
    assert any(isinstance(m, BroadcastPReLU) for m in module.modules()) != swapped
    with torch.no_grad():
        np.testing.assert_allclose(module(torch.from_numpy(x)).numpy(), expected, atol=1e-6)


# ------------------------------------------------------------------------------------------------
# onnx:<path> encoder


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory) -> Path:
    return tiny_recognizer(tmp_path_factory.mktemp("onnx") / "tiny_r.onnx")


def test_tiny_recognizer_matches_insightface(tiny_path):
    encoder = create_identity_encoder(f"onnx:{tiny_path}")
    assert (encoder.input_size, encoder.embedding_dim) == (112, 16)
    assert (encoder.input_mean, encoder.input_std) == (127.5, 127.5)
    assert sum(isinstance(m, torch.nn.PReLU) for m in encoder.modules()) == 2  # onnx2torch's PReLU swapped
    images = _random_faces(4)
    with torch.no_grad():
        x = _to_model_input(images)
        raw = encoder.network(encoder.preprocess(x)).numpy()
        unit = encoder(x).numpy()
    expected = _insightface_features(tiny_path, images)
    assert np.abs(raw - expected).max() <= 1e-4 * max(1.0, np.abs(expected).max())
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1.0, atol=1e-5)
    # the convention matters: BGR input would have given other features
    with torch.no_grad():
        swapped = encoder.network(encoder.preprocess(x.flip(1))).numpy()
    assert np.abs(swapped - expected).max() > 1e-2


def test_encoder_is_frozen_and_differentiable(tiny_path):
    encoder = create_identity_encoder(f"onnx:{tiny_path}")
    assert not any(p.requires_grad for p in encoder.parameters())
    encoder.train()
    assert not any(m.training for m in encoder.modules())
    x = _to_model_input(_random_faces(2, size=224)).requires_grad_(True)  # any crop size: resized to 112
    encoder(x)[:, 0].sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_sface_file_as_insightface_recognizer(media):
    """The folded SFace graph starts with MXNet-style `_minusscalar0` / `_mulscalar0` nodes, so
    insightface feeds it raw RGB 0..255; the encoder must do the same on a real aligned face."""
    path = need("sface") / "sface.onnx"
    encoder = create_identity_encoder(f"onnx:{path}")
    assert (encoder.input_mean, encoder.input_std, encoder.embedding_dim) == (0.0, 1.0, 128)
    images = np.stack([read_rgb(media("Tom_Hanks_54745.png"))])
    with torch.no_grad():
        raw = encoder.network(encoder.preprocess(_to_model_input(images))).numpy()
    expected = _insightface_features(path, images)
    assert np.abs(raw - expected).max() <= 1e-4  # measured 3e-6


def test_missing_file_names_path(tmp_path):
    missing = tmp_path / "models" / "w600k_r50.onnx"
    with pytest.raises(FaceSwapError) as info:
        create_identity_encoder(f"onnx:{missing}")
    assert isinstance(info.value, ModelFileError)
    assert str(missing) in str(info.value) and "does not exist" in str(info.value)


def test_unreadable_file_names_path(tmp_path):
    junk = tmp_path / "glintr100.onnx"
    junk.write_bytes(b"this is not a protobuf \x00\xff" * 10)
    with pytest.raises(ModelFileError) as info:
        create_identity_encoder(f"onnx:{junk}")
    assert str(junk) in str(info.value) and "could not be read" in str(info.value)
