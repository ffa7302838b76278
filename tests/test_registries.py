"""One contract per registry, checked for every name it lists: what ``create(name)`` returns obeys the role's
interface (shapes, ranges, frozen weights), and a name that needs a user file fails with a FaceSwapError naming
the file. Unknown names fail the same way in every role."""

from __future__ import annotations

import importlib
import re

import numpy as np
import pytest
import torch
from conftest import read_rgb

from faceswap_pl import zoo
from faceswap_pl.errors import FaceSwapError, UnknownNameError
from faceswap_pl.models.attributes import ATTRIBUTE_ENCODERS, AttributeEncoder
from faceswap_pl.models.detectors import DETECTORS, Face, FaceDetector
from faceswap_pl.models.frozen import FrozenModule
from faceswap_pl.models.identity import IDENTITY_ENCODERS, IdentityEncoder
from faceswap_pl.models.landmarks import LANDMARK_MODELS, LandmarkModel
from faceswap_pl.models.restoration import RESTORATION_MODELS
from faceswap_pl.registry import Registry

#: registered names that need a file the user brings: building them without one must say which file
USER_FILE = {"arcface_iresnet50", "arcface_iresnet100", "awing_fan", "onnx:<path>", "insightface:<dir>"}
#: what stands for a prefix placeholder when a name is built
EXAMPLES = {"timm:<model_name>": "timm:resnet18", "onnx:<path>": "onnx:/nonexistent/w600k_r50.onnx",
            "insightface:<dir>": "insightface:/nonexistent/buffalo_l"}

REGISTRIES = {"identity": IDENTITY_ENCODERS, "landmarks": LANDMARK_MODELS, "attributes": ATTRIBUTE_ENCODERS,
              "detectors": DETECTORS, "restoration": RESTORATION_MODELS, "zoo": zoo.ZOO}


def _names(registry: Registry) -> list[str]:
    return registry.names()


def _faces(n: int = 2, size: int = 112) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(0)) * 2 - 1


def _frozen(module: torch.nn.Module) -> bool:
    return not module.training and not any(p.requires_grad for p in module.parameters())


def _build(registry: Registry, name: str, **kwargs):
    """create(name); for a user-file name, check the error names the missing file and return None."""
    built = EXAMPLES.get(name, name)
    if name in USER_FILE:
        with pytest.raises(FaceSwapError) as info:
            registry.create(built, **kwargs)
        assert re.search(r"\.pth|\.onnx|weights|model pack|director", str(info.value)), str(info.value)
        return None
    return registry.create(built, **kwargs)


@pytest.mark.parametrize("role", sorted(REGISTRIES))
def test_unknown_names_list_every_valid_name(role):
    registry = REGISTRIES[role]
    names = registry.names()
    assert names and len(set(names)) == len(names)
    typo = names[0][:-1] + ("x" if names[0][-1] != "x" else "y")
    lookup = registry.factory if role == "zoo" else registry.create
    with pytest.raises(UnknownNameError) as info:
        lookup(typo)
    message = str(info.value)
    assert repr(typo) in message and all(name in message for name in names)
    with pytest.raises(UnknownNameError, match="must be a string"):
        registry.create(3)


@pytest.mark.parametrize("name", _names(IDENTITY_ENCODERS))
def test_identity_encoder_contract(name):
    encoder = _build(IDENTITY_ENCODERS, name)
    if encoder is None:
        return
    assert isinstance(encoder, IdentityEncoder) and _frozen(encoder)
    x = _faces()
    embedding = encoder(x)
    assert embedding.shape == (2, encoder.embedding_dim) and encoder.embedding_dim > 0
    assert torch.allclose(embedding.norm(dim=-1), torch.ones(2), atol=1e-5)
    for resize in ("bilinear", "corners", "antialias"):
        assert encoder.features(x, resize).shape == (2, encoder.embedding_dim)


@pytest.mark.parametrize("name", _names(LANDMARK_MODELS))
def test_landmark_model_contract(name):
    model = _build(LANDMARK_MODELS, name)
    if model is None:
        return
    assert isinstance(model, LandmarkModel) and _frozen(model)
    x = _faces().requires_grad_()
    points = model(x)
    assert points.shape == (2, model.num_points, 2) and torch.isfinite(points).all()
    assert points.min() > -0.5 and points.max() < 1.5  # unit crop coordinates (a little outside is allowed)
    eyes = model.eye_features(x)
    assert eyes.shape[0] == 2 and eyes.shape[-1] == 2 and len(model.eye_indices) > 0
    eyes.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


@pytest.mark.parametrize("name", _names(ATTRIBUTE_ENCODERS))
def test_attribute_encoder_contract(name):
    encoder = _build(ATTRIBUTE_ENCODERS, name, image_size=64, width=0.125)
    assert isinstance(encoder, AttributeEncoder)
    maps = encoder(_faces(size=64))
    assert len(maps) == encoder.num_levels == 6 and len(encoder.channels) == 6
    for k, (z, channels) in enumerate(zip(maps, encoder.channels)):
        assert z.shape == (2, channels, 2 ** (k + 1), 2 ** (k + 1))


@pytest.mark.parametrize("name", _names(DETECTORS))
def test_detector_contract(name, media):
    detector = _build(DETECTORS, name)
    if detector is None:
        return
    assert isinstance(detector, FaceDetector)
    assert detector(np.zeros((120, 160, 3), np.uint8)) == []
    faces = detector(read_rgb(media("multi_face.jpg")))
    assert len(faces) >= 2 and all(isinstance(f, Face) for f in faces)
    assert [f.score for f in faces] == sorted((f.score for f in faces), reverse=True)
    for face in faces:
        x1, y1, x2, y2 = face.box
        assert face.keypoints.shape == (5, 2) and x1 < x2 and y1 < y2
        # ArcFace order: the image-left eye first, the eyes above the mouth corners
        assert face.keypoints[0, 0] < face.keypoints[1, 0] and face.keypoints[:2, 1].max() < face.keypoints[3:, 1].min()


@pytest.mark.parametrize("name", _names(RESTORATION_MODELS))
def test_restoration_contract(name):
    model = _build(RESTORATION_MODELS, name)
    assert isinstance(model, FrozenModule) and _frozen(model)
    x = _faces(1, 16)
    out = model(x)
    assert out.shape[:2] == (1, 3) and out.shape[-1] == out.shape[-2] and out.shape[-1] % 16 == 0
    assert out.min() >= -1 and out.max() <= 1


@pytest.mark.parametrize("name", _names(zoo.ZOO))
def test_zoo_entry_contract(name):
    entry = zoo.get_entry(name)
    assert entry.name == name and entry.role in {"identity", "eval_identity", "landmarks", "detector", "restoration",
                                                  "media"}
    assert re.fullmatch(r"[A-Za-z0-9_.\-]+==[A-Za-z0-9_.\-]+", entry.package)
    assert entry.files and all(re.fullmatch(r"[0-9a-f]{64}", f.sha256) and f.size > 0 for f in entry.files)
    assert (entry.converter is None) == (entry.role == "media")
    if entry.converter is not None:  # the converter named by the entry exists where it says
        module, function = entry.converter.split(":")
        assert callable(getattr(importlib.import_module(module), function))
