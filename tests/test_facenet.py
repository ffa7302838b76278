"""FaceNet (Inception-ResNet-v1) evaluation recognizer: known answers only.

The reference is Keras 3 (torch backend, in a subprocess) loading the original h5 with the same
weights; its ``Lambda(x * scale)`` layers are replaced by an equivalent layer built from the stored
``arguments`` so that no pickled bytecode from the file is executed. Needs ``keras`` (dev extra).
"""

from __future__ import annotations

import importlib.util
import itertools
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import need, read_rgb

from faceswap_pl import zoo
from faceswap_pl.alignment import align_face, arcface_template, transform_points
from faceswap_pl.models import identity
from faceswap_pl.models.identity.facenet import (
    H5_NAME,
    FaceNetEncoder,
    InceptionResnetV1,
    create_facenet,
    prewhiten,
    recrop_matrix,
)

YUNET = Path.home() / ".cache/faceswap_pl/raw/yunet/face_detection_yunet_2023mar.onnx"
POSED = ["0-f1-su-ph.jpg", "0-f15-hao-ph.jpg", "15-f13-anc-ph.jpg", "45-m7-di-ph.jpg"]

# Keras reference, run as `python -c KERAS_REFERENCE h5 in.npy out.npy` (NHWC float32 in, (N, 128) out).
KERAS_REFERENCE = r'''
import os, sys
os.environ["KERAS_BACKEND"] = "torch"
import numpy as np, keras

class SafeScale(keras.layers.Layer):
    """Stands in for the h5's Lambda(lambda x, scale: x * scale), built from its `arguments`."""
    def __init__(self, arguments, name=None, trainable=True, dtype=None, **ignored):
        super().__init__(name=name, trainable=trainable, dtype=dtype)
        self.scale = float(arguments["scale"])
    def call(self, x):
        return x * self.scale

h5, inp, out = sys.argv[1:4]
model = keras.models.load_model(h5, compile=False, custom_objects={"Lambda": SafeScale})
kinds = [type(layer).__name__ for layer in model.layers]
assert "Lambda" not in kinds and kinds.count("SafeScale") == 21, sorted(set(kinds))
x = np.load(inp)
np.save(out, keras.ops.convert_to_numpy(model([x], training=False)))
'''


def _detect_align(image_rgb: np.ndarray, size: int = 112) -> np.ndarray:
    """The ArcFace-aligned crop (size, size, 3) of the most confident YuNet face."""
    h, w = image_rgb.shape[:2]
    detector = cv2.FaceDetectorYN.create(str(YUNET), "", (w, h))
    _, faces = detector.detect(cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR))
    assert faces is not None and len(faces), "YuNet found no face"
    best = faces[np.argmax(faces[:, -1])]
    return align_face(image_rgb, best[4:14].reshape(5, 2), size)[0]


def _video_frames(path: Path, every: int, count: int) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames, index = [], 0
    while len(frames) < count:
        ok, frame = cap.read()
        assert ok, f"{path} ended after {index} frames"
        if index % every == 0:
            frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
        index += 1
    cap.release()
    return frames


def _to_tensor(crops: list[np.ndarray]) -> torch.Tensor:
    """uint8 (H, W, 3) RGB crops -> (N, 3, H, W) in [-1, 1]."""
    return torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float() / 127.5 - 1.0


@pytest.fixture(scope="module")
def facenet() -> FaceNetEncoder:
    need("facenet")
    assert YUNET.is_file(), f"{YUNET} missing: run `faceswap-pl models fetch yunet`"
    return create_facenet()


@pytest.fixture(scope="module")
def crops(media) -> dict[str, list[np.ndarray]]:
    """Aligned 112-px crops: 'same' (single_face.jpg), 'video' (8 frames of single_face.mp4), posed."""
    out = {"same": [_detect_align(read_rgb(media("single_face.jpg")))]}
    out["video"] = [_detect_align(f) for f in _video_frames(media("single_face.mp4"), every=9, count=8)]
    for name in POSED:
        out[name] = [_detect_align(read_rgb(media(name)))]
    return out


@pytest.fixture(scope="module")
def embeddings(facenet, crops) -> dict[str, np.ndarray]:
    names = list(crops)
    x = _to_tensor([c for n in names for c in crops[n]])
    with torch.no_grad():
        e = facenet(x).numpy()
    out, start = {}, 0
    for n in names:
        out[n] = e[start:start + len(crops[n])]
        start += len(crops[n])
    return out


def test_torch_matches_keras_reference(facenet, crops, tmp_path):
    # Measured: max abs diff 1.5e-6 on these inputs (raw 128-d outputs of magnitude up to 2.6).
    assert importlib.util.find_spec("keras") is not None, "the Keras reference needs `pip install keras` (dev extra)"
    faces = _to_tensor([crops["same"][0], crops["video"][0], crops[POSED[0]][0]])
    with torch.no_grad():
        x = facenet.preprocess(faces)
        x = torch.cat([x, prewhiten(torch.rand(1, 3, 160, 160, generator=torch.Generator().manual_seed(0)) * 255)])
        ours = facenet.backbone(x).numpy()
    np.save(tmp_path / "x.npy", x.permute(0, 2, 3, 1).contiguous().numpy())
    h5 = zoo.cache_root() / "raw" / "facenet" / H5_NAME  # the sha256-verified original, kept by the fetch
    assert h5.is_file(), f"{h5} missing: run `faceswap-pl models fetch facenet --force`"
    command = [sys.executable, "-c", KERAS_REFERENCE, str(h5), str(tmp_path / "x.npy"), str(tmp_path / "y.npy")]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ref = np.load(tmp_path / "y.npy")
    assert ref.shape == ours.shape == (4, 128)
    assert np.abs(ref).max() > 0.5  # a real output, not zeros
    assert np.abs(ours - ref).max() <= 1e-4


def test_same_person_closer_than_different(embeddings):
    # Measured (margin 0, shift 0.075): single_face.mp4 frames vs single_face.jpg cosine 0.78..0.81;
    # the six pairs among the four posed people 0.12..0.56.
    same = (embeddings["video"] @ embeddings["same"].T).ravel()
    posed = [embeddings[n][0] for n in POSED]
    different = np.array([a @ b for a, b in itertools.combinations(posed, 2)])
    assert same.min() > 0.7
    assert different.max() < 0.6
    assert same.min() > different.max() + 0.15


def test_other_crop_sizes_agree(facenet, crops, media):
    """The same face aligned at 256 px (antialiased shrink, then re-crop) gives nearly the same embedding."""
    big = _to_tensor([_detect_align(read_rgb(media("single_face.jpg")), size=256)])
    small = torch.nn.functional.interpolate(big, size=112, mode="bilinear", antialias=True, align_corners=False)
    with torch.no_grad():
        e256 = facenet(big)[0]
        e112, e256_resized = facenet(torch.cat([_to_tensor(crops["same"]), small]))
    assert float(e112 @ e256) > 0.98  # measured 0.998 (aligned at 112 vs aligned at 256)
    assert float(e256_resized @ e256) > 0.99  # measured 0.997 (the 256 crop resized to 112)


def test_recrop_maps_template_lower():
    """Margin 0 / shift 0 is a plain resize; the default shift moves the ArcFace points up 12 px at 160."""
    np.testing.assert_allclose(recrop_matrix(160, 0.0, 0.0), [[1, 0, 0], [0, 1, 0]], atol=1e-12)
    for size in (112, 256):
        moved = transform_points(arcface_template(size), recrop_matrix(size))
        # half-pixel resize of the template, then 0.075 * 160 = 12 px up
        expected = (arcface_template(size) + 0.5) * 160 / size - 0.5 - [0.0, 12.0]
        np.testing.assert_allclose(moved, expected, atol=1e-9)
    with pytest.raises(ValueError):
        recrop_matrix(112, margin=-0.6)


def test_prewhiten_standardises():
    x = torch.rand(2, 3, 160, 160, generator=torch.Generator().manual_seed(1)) * 255
    y = prewhiten(x)
    assert torch.allclose(y.mean(dim=(1, 2, 3)), torch.zeros(2), atol=1e-5)
    assert torch.allclose(y.std(dim=(1, 2, 3), unbiased=False), torch.ones(2), atol=1e-5)
    flat = torch.full((1, 3, 160, 160), 9.0)
    assert torch.equal(prewhiten(flat), torch.zeros_like(flat))  # std floor: no division by zero


def test_gradients_reach_input_and_frozen(facenet, crops):
    x = _to_tensor(crops["same"]).requires_grad_(True)
    facenet(x)[0, :8].sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in facenet.parameters())
    assert all(p.grad is None for p in facenet.parameters())
    facenet.train()
    assert not facenet.training and not any(m.training for m in facenet.modules())


def test_interface_and_registry(facenet):
    assert identity.IDENTITY_ENCODERS.factory("facenet") is create_facenet
    assert facenet.embedding_dim == 128 and facenet.input_size == 160
    assert isinstance(facenet.backbone, InceptionResnetV1)
    # 22,793,728 = the h5's 22,808,144 stored values - 2 x 14,416 BN moving statistics (buffers here)
    # + 14,416 BN gammas (Keras scale=False; stored as ones).
    assert sum(p.numel() for p in facenet.parameters()) == 22_793_728
    with pytest.raises(ValueError):
        facenet(torch.zeros(1, 1, 112, 112))
    with pytest.raises(ValueError):
        facenet(torch.zeros(1, 3, 112, 96))
