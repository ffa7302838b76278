"""SFace identity encoder: torch vs onnxruntime / OpenCV, identity separation, freezing."""

from __future__ import annotations

import cv2
import numpy as np
import onnx
import pytest
import torch
from conftest import need, read_rgb

from faceswap_pl.alignment import align_face
from faceswap_pl.models.identity.sface import CONVERTED_FILE, SFaceEncoder, create_sface
from faceswap_pl.models.importers.onnx import ort_session

POSED = ["0-f1-su-ph.jpg", "0-f15-hao-ph.jpg", "15-f13-anc-ph.jpg", "45-m7-di-ph.jpg"]  # four people


def _video_frames(path, every: int, count: int) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    frames, index = [], 0
    while len(frames) < count:
        ok, frame = capture.read()
        if not ok:
            break
        if index % every == 0:
            frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
        index += 1
    capture.release()
    return frames


@pytest.fixture(scope="module")
def detector():
    from faceswap_pl.models.detectors import create_detector

    need("yunet")
    return create_detector("yunet")


@pytest.fixture(scope="module")
def crops(media, detector) -> dict[str, np.ndarray]:
    """Aligned 112-px RGB crops: the four posed people, single_face.jpg and 3 frames of single_face.mp4."""
    images = {name: read_rgb(media(name)) for name in POSED + ["single_face.jpg"]}
    for i, frame in enumerate(_video_frames(media("single_face.mp4"), every=24, count=3)):
        images[f"frame{i}"] = frame
    out = {}
    for name, image in images.items():
        faces = detector.detect(image)
        assert faces, f"no face found in {name}"
        out[name] = align_face(image, faces[0].keypoints, 112)[0]
    return out


@pytest.fixture(scope="module")
def sface() -> SFaceEncoder:
    need("sface")
    return create_sface()


@pytest.fixture(scope="module")
def features(sface, crops) -> dict[str, np.ndarray]:
    """Raw (unnormalised) SFace features (128,) of every crop, computed once."""
    names = list(crops)
    with torch.no_grad():
        raw = sface.network(sface.preprocess(_batch(crops, names))).numpy()
    return dict(zip(names, raw))


def _unit(features: dict, names: list[str]) -> np.ndarray:
    vectors = np.stack([features[n] for n in names])
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def _batch(crops: dict, names: list[str]) -> torch.Tensor:
    """(N, 3, 112, 112) RGB in [-1, 1]."""
    return torch.from_numpy(np.stack([crops[n] for n in names])).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def test_converted_graph_is_plain_fp32():
    model = onnx.load(str(need("sface") / CONVERTED_FILE))
    ops = {node.op_type for node in model.graph.node}
    assert not ops & {"DequantizeLinear", "Constant"}
    assert model.opset_import[0].version <= 17
    assert [i.name for i in model.graph.input] == ["data"]
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "N"


def test_torch_matches_onnxruntime(features, crops):
    names = list(crops)
    raw = np.stack([features[n] for n in names])
    blob = np.stack([crops[n] for n in names]).transpose(0, 3, 1, 2).astype(np.float32)  # RGB 0..255
    expected = ort_session(need("sface") / CONVERTED_FILE).run(None, {"data": blob})[0]
    # measured: 3.9e-6 (features up to |3.8|)
    assert np.abs(raw - expected).max() <= 1e-4


def test_channel_order_matches_opencv_recognizer(sface, features, crops):
    """OpenCV's FaceRecognizerSF (BGR crop in, swapRB inside) is the reference for the convention."""
    recognizer = cv2.FaceRecognizerSF.create(str(need("sface") / CONVERTED_FILE), "")
    names = ["single_face.jpg", "0-f1-su-ph.jpg", "45-m7-di-ph.jpg"]
    expected = np.stack([recognizer.feature(cv2.cvtColor(crops[n], cv2.COLOR_RGB2BGR)).ravel() for n in names])
    assert np.abs(np.stack([features[n] for n in names]) - expected).max() <= 1e-4  # measured 2.7e-6
    # and the order matters: BGR input moves the embedding (measured cosine 0.88..0.95)
    with torch.no_grad():
        swapped = sface(_batch(crops, names).flip(1)).numpy()
    assert (_unit(features, names) * swapped).sum(1).max() < 0.98


def test_same_person_closer_than_different(features):
    same = _unit(features, ["single_face.jpg", "frame0", "frame1", "frame2"])
    different = _unit(features, POSED + ["single_face.jpg"])
    same_cos = (same[:1] @ same[1:].T).flatten()  # the photo vs the video frames
    diff_cos = (different @ different.T)[np.triu_indices(5, 1)]
    # measured: same person 0.625 / 0.705 / 0.711; different people -0.027 .. 0.249
    assert same_cos.min() > 0.5
    assert diff_cos.max() < 0.42
    assert same_cos.min() > diff_cos.max() + 0.2


def test_other_crop_sizes(sface, features, detector, media):
    """A 224-px crop on the scaled template embeds like the 112-px crop (resized inside)."""
    image = read_rgb(media("single_face.jpg"))
    big = align_face(image, detector.detect(image)[0].keypoints, 224)[0]
    with torch.no_grad():
        e224 = sface(torch.from_numpy(big[None]).permute(0, 3, 1, 2).float() / 127.5 - 1.0).numpy()
    assert float((e224 * _unit(features, ["single_face.jpg"])).sum()) > 0.95  # measured 0.989


def test_frozen_interface(sface, crops):
    assert sface.embedding_dim == 128 and sface.input_size == 112
    assert not any(p.requires_grad for p in sface.parameters())
    sface.train()
    assert not any(m.training for m in sface.modules())
    x = _batch(crops, ["frame0"]).requires_grad_(True)
    out = sface(x)
    assert out.shape == (1, 128)
    torch.testing.assert_close(out.norm(dim=1), torch.ones(1))
    out[0, :8].sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_registered_and_rejects_bad_shape(sface):
    from faceswap_pl.models import identity

    assert "sface" in identity.identity_names()
    assert identity.IDENTITY_ENCODERS.factory("sface") is create_sface
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        sface(torch.zeros(1, 1, 112, 112))
