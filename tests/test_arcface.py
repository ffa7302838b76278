"""ArcFace iresnet: arcface_torch / GHOST layout, loading a user backbone.pth, frozen adapter behaviour.

Only random weights exist here; they are saved in the documented layout (``torch.save(state_dict)``)
and must load strictly and reproduce the in-memory network exactly.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from faceswap_pl.alignment import resize_aligned
from faceswap_pl.errors import CheckpointMismatchError, CheckpointNotFoundError, FaceSwapError, UnsafeCheckpointError
from faceswap_pl.models import identity
from faceswap_pl.models.identity.arcface import (
    IRESNET_LAYERS,
    ArcFaceEncoder,
    arcface_iresnet50,
    arcface_iresnet100,
    iresnet,
)

REFERENCE = Path(__file__).resolve().parent / "data" / "ghost_state_dict_keys.json"


@pytest.fixture(scope="module")
def reference_keys() -> dict:
    if not REFERENCE.exists():
        pytest.fail(f"reference key list missing: {REFERENCE}")
    return json.loads(REFERENCE.read_text())


@pytest.fixture(scope="module")
def r100(randomize_batchnorm):
    torch.manual_seed(0)
    return randomize_batchnorm(iresnet("iresnet100").eval(), seed=1)


@pytest.fixture(scope="module")
def r100_file(r100, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("arcface") / "backbone.pth"
    torch.save(r100.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def encoder(r100_file) -> ArcFaceEncoder:
    return arcface_iresnet100(weights=r100_file)


def _iresnet50_part(state_dict: dict) -> dict:
    """The entries of an iresnet100 state dict that an iresnet50 also has (its first blocks per stage)."""
    def kept(key: str) -> bool:
        m = re.match(r"layer(\d)\.(\d+)\.", key)
        return m is None or int(m.group(2)) < IRESNET_LAYERS["iresnet50"][int(m.group(1)) - 1]

    return {k: v for k, v in state_dict.items() if kept(k)}


def test_iresnet100_keys_and_shapes_equal_ghost_reference(r100, reference_keys):
    ours = {k: list(v.shape) for k, v in r100.state_dict().items()}
    assert list(ours.items()) == list(reference_keys["iresnet100"].items())  # same names, shapes and order
    meta = reference_keys["_meta"]["iresnet100"]
    assert sum(p.numel() for p in r100.parameters()) == meta["n_params"] == 65_156_160


def test_iresnet50_is_iresnet100_with_fewer_blocks(r100):
    with torch.device("meta"):  # names and shapes only
        r50_keys = list(iresnet("iresnet50").state_dict())
    assert r50_keys == list(_iresnet50_part(r100.state_dict())) and len(r50_keys) == 475


def test_factories_are_registered():
    assert identity.IDENTITY_ENCODERS.factory("arcface_iresnet50") is arcface_iresnet50
    assert identity.IDENTITY_ENCODERS.factory("arcface_iresnet100") is arcface_iresnet100


def test_loaded_backbone_reproduces_the_in_memory_network_and_passes_gradients(encoder, r100):
    # one forward/backward pair only: iresnet100 is slow on 2 cores
    assert all(torch.equal(a, b) for a, b in zip(encoder.net.state_dict().values(), r100.state_dict().values()))
    x = (torch.rand(1, 3, 224, 224, generator=torch.Generator().manual_seed(0)) * 2 - 1).requires_grad_()
    encoder.train()  # must stay in eval mode
    got = encoder(x)
    with torch.no_grad():  # [-1, 1] RGB at 112 px is arcface_torch's input: the adapter only resizes and normalises
        expected = F.normalize(r100(resize_aligned(x, 112)), dim=-1)
    assert got.shape == (1, 512) and encoder.embedding_dim == 512
    assert torch.allclose(got, expected, rtol=0, atol=1e-6)
    assert torch.allclose(got.norm(dim=-1), torch.ones(1))

    assert not encoder.training and all(not m.training for m in encoder.modules())
    assert not any(p.requires_grad for p in encoder.parameters())
    got[:, :8].sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in encoder.parameters())


def test_iresnet50_weights_given_to_iresnet100_name_the_right_encoder(r100, tmp_path):
    torch.save(_iresnet50_part(r100.state_dict()), tmp_path / "r50.pth")
    with pytest.raises(CheckpointMismatchError) as info:
        arcface_iresnet100(weights=tmp_path / "r50.pth")
    message = str(info.value)
    # [3,13,30,3] - [3,4,14,3] = 25 blocks of 18 keys, of which 3 BatchNorm counters do not count
    assert "do not fit the network: 375 missing keys (layer2.4.bn1.weight," in message and "and 367 more" in message
    assert "unexpected" not in message and "use the identity encoder 'arcface_iresnet50' instead" in message


def test_renamed_key_and_wrong_shape_are_listed(r100, tmp_path):
    sd = r100.state_dict()
    sd["fc.weights"] = sd.pop("fc.weight")
    sd["prelu.weight"] = torch.zeros(32)
    torch.save(sd, tmp_path / "bad.pth")
    with pytest.raises(CheckpointMismatchError) as info:
        arcface_iresnet100(weights=tmp_path / "bad.pth")
    message = str(info.value)
    assert f"ArcFace iresnet100 weights '{tmp_path / 'bad.pth'}' do not fit the network" in message
    assert "1 missing keys (fc.weight)" in message and "1 unexpected keys (fc.weights)" in message
    assert "1 shape mismatches (prelu.weight: checkpoint [32] vs network [64])" in message


def test_no_weights_says_they_are_user_supplied():
    for factory in (arcface_iresnet50, arcface_iresnet100):
        with pytest.raises(FaceSwapError) as info:
            factory(weights=None)
        message = str(info.value)
        assert "backbone.pth" in message and "user-supplied" in message and "'sface'" in message


def test_missing_and_code_carrying_files_are_refused(tmp_path):
    with pytest.raises(CheckpointNotFoundError, match="does not exist"):
        arcface_iresnet100(weights=tmp_path / "backbone.pth")

    marker = tmp_path / "ran"

    class RunsOnLoad:
        def __reduce__(self):
            return (os.makedirs, (str(marker),))  # harmless; shows whether it ran

    torch.save({"conv1.weight": torch.zeros(64, 3, 3, 3), "hook": RunsOnLoad()}, tmp_path / "evil.pth")
    with pytest.raises(UnsafeCheckpointError, match="Refused to load .* for safety"):
        arcface_iresnet100(weights=tmp_path / "evil.pth")
    assert not marker.exists()
