"""AdaptiveWing FAN: AWing / GHOST layout, loading a user WFLW_4HG.pth, soft-argmax, frozen adapter.

Only random weights exist here; they are saved as GHOST reads them (``{"state_dict": ...}``) and must
load strictly and reproduce the in-memory network exactly.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
import torch

from faceswap_pl.alignment import resize_aligned
from faceswap_pl.errors import CheckpointMismatchError, FaceSwapError, UnsafeCheckpointError
from faceswap_pl.models import landmarks
from faceswap_pl.models.landmarks.awing import FAN, AddCoords, AWingLandmarks, awing_fan, soft_argmax_2d

REFERENCE = Path(__file__).resolve().parent / "data" / "ghost_state_dict_keys.json"


@pytest.fixture(scope="module")
def fan(randomize_batchnorm) -> FAN:
    torch.manual_seed(0)
    return randomize_batchnorm(FAN().eval(), seed=2)


@pytest.fixture(scope="module")
def fan_file(fan, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("awing") / "WFLW_4HG.pth"
    torch.save({"state_dict": fan.state_dict()}, path)
    return path


def test_fan_keys_and_shapes_equal_ghost_reference(fan):
    if not REFERENCE.exists():
        pytest.fail(f"reference key list missing: {REFERENCE}")
    reference = json.loads(REFERENCE.read_text())
    ours = {k: list(v.shape) for k, v in fan.state_dict().items()}
    assert list(ours.items()) == list(reference["FAN_4_98"].items())  # same names, shapes and order
    assert sum(p.numel() for p in fan.parameters()) == reference["_meta"]["FAN_4_98"]["n_params"] == 24_153_036


def test_factory_is_registered_with_pupil_indices():
    assert landmarks.LANDMARK_MODELS.factory("awing_fan") is awing_fan
    assert AWingLandmarks.num_points == 98 and AWingLandmarks.eye_indices == (96, 97)


def test_loaded_checkpoint_reproduces_the_in_memory_network_and_passes_gradients(fan, fan_file):
    # one forward/backward pair only: four hourglasses at 256 px are slow on 2 cores
    model = awing_fan(weights=fan_file)
    assert all(torch.equal(a, b) for a, b in zip(model.fan.state_dict().values(), fan.state_dict().values()))
    x = (torch.rand(1, 3, 128, 128, generator=torch.Generator().manual_seed(0)) * 2 - 1).requires_grad_()
    model.train()  # must stay in eval mode
    heatmaps = model.heatmaps(x)
    with torch.no_grad():  # the FAN sees 256-px RGB in [0, 1], mapped as GHOST maps it (0.5 * x + 0.5)
        expected = fan(resize_aligned(0.5 * x + 0.5, 256))[-1][:, :98]
    assert heatmaps.shape == (1, 98, 64, 64)
    assert torch.allclose(heatmaps, expected, rtol=0, atol=1e-6)
    assert (heatmaps >= 0).all()  # GHOST's effective end_relu
    points = soft_argmax_2d(heatmaps)
    assert points.shape == (1, 98, 2) and ((points > 0) & (points < 1)).all()

    assert not model.training and all(not m.training for m in model.modules())
    assert not any(p.requires_grad for p in model.parameters())
    (points[:, model.eye_indices].sum() + heatmaps[:, 96:98].mean()).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.parameters())


def _gaussian(h: int, w: int, cx: float, cy: float, sigma: float) -> torch.Tensor:
    """(h, w) map of exp(-d^2 / 2 sigma^2) around the point (cx, cy) in pixel-index units."""
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    return torch.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * sigma**2))


def test_soft_argmax_single_peaks_known_answers():
    maps = torch.zeros(2, 3, 64, 64, dtype=torch.float64)
    maps[0, 0, 10, 20] = 1.0                             # one hot pixel: row 10, column 20
    maps[0, 1] = _gaussian(64, 64, cx=41, cy=5, sigma=1.5)
    maps[1, 0] = 3.0 * _gaussian(64, 64, cx=30.5, cy=50, sigma=1.0) - 0.2  # half-way between columns 30, 31
    maps[1, 1] = _gaussian(64, 64, cx=0, cy=63, sigma=0.5)                 # corner pixel
    maps[1, 2] = 0.05 * _gaussian(64, 64, cx=12, cy=40, sigma=2.0)         # weak peak: scale does not matter
    got = soft_argmax_2d(maps) * 64  # heatmap pixels; pixel j has its centre at j + 0.5
    expected = {(0, 0): (20.5, 10.5), (0, 1): (41.5, 5.5), (1, 0): (31.0, 50.5),
                (1, 1): (0.5, 63.5), (1, 2): (12.5, 40.5)}
    for (n, k), xy in expected.items():
        assert torch.allclose(got[n, k], torch.tensor(xy, dtype=torch.float64), atol=1e-3), (n, k, got[n, k])
    # a flat map has no peak: the centre
    assert torch.allclose(got[0, 2], torch.tensor([32.0, 32.0], dtype=torch.float64))


def test_soft_argmax_is_differentiable_and_moves_towards_added_mass():
    maps = _gaussian(64, 64, cx=20, cy=20, sigma=1.0)[None, None].float().requires_grad_()
    point = soft_argmax_2d(maps)
    point[0, 0, 0].backward()
    # raising the pixel right of the peak pulls x right; the one left of it pulls x left
    assert maps.grad[0, 0, 20, 21] > 0 > maps.grad[0, 0, 20, 19]
    assert math.isclose(maps.grad[0, 0, 20, 40].item(), 0.0, abs_tol=1e-6)  # far background: no pull


def test_coordinate_channels_follow_awing():
    layer = AddCoords(size=4, with_boundary=True)
    heatmap = torch.zeros(1, 99, 4, 4)
    heatmap[0, 98, 1, 2] = 0.5  # boundary above the 0.05 threshold at row 1, column 2
    heatmap[0, 98, 3, 3] = 0.04  # below it
    out = layer(torch.zeros(1, 2, 4, 4), heatmap)
    third = torch.tensor([-1.0, -1 / 3, 1 / 3, 1.0])
    assert out.shape == (1, 2 + 3 + 2, 4, 4)
    assert torch.allclose(out[0, 2], third[:, None].expand(4, 4))  # AWing's "xx" varies down the rows
    assert torch.allclose(out[0, 3], third[None, :].expand(4, 4))  # its "yy" along the columns
    assert torch.isclose(out[0, 4].max(), torch.tensor(1.0)) and torch.isclose(out[0, 4, 0, 0], torch.tensor(1.0))
    masked = torch.zeros(2, 4, 4)
    masked[:, 1, 2] = torch.tensor([-1 / 3, 1 / 3])
    assert torch.allclose(out[0, 5:], masked)


def test_wrong_checkpoint_is_explained(fan, tmp_path):
    sd = fan.state_dict()
    sd["bn1.weights"] = sd.pop("bn1.weight")
    for i in range(4):  # a 68-point (300W) head
        sd[f"l{i}.weight"], sd[f"l{i}.bias"] = torch.zeros(69, 256, 1, 1), torch.zeros(69)
    torch.save({"state_dict": sd, "epoch": 10}, tmp_path / "300W_4HG.pth")
    with pytest.raises(CheckpointMismatchError) as info:
        awing_fan(weights=tmp_path / "300W_4HG.pth")
    message = str(info.value)
    assert "1 missing keys (bn1.weight)" in message and "1 unexpected keys (bn1.weights)" in message
    assert "8 shape mismatches (l0.weight: checkpoint [69, 256, 1, 1] vs network [99, 256, 1, 1]" in message
    assert "holds a FAN with 4 stacks and 68 landmarks" in message and "WFLW_4HG.pth" in message


def test_no_weights_says_they_are_user_supplied():
    with pytest.raises(FaceSwapError) as info:
        awing_fan(weights=None)
    message = str(info.value)
    assert "WFLW_4HG.pth" in message and "user-supplied" in message and "'mediapipe_iris'" in message


def test_code_carrying_checkpoint_is_refused(tmp_path):
    marker = tmp_path / "ran"

    class RunsOnLoad:
        def __reduce__(self):
            return (os.makedirs, (str(marker),))  # harmless; shows whether it ran

    torch.save({"state_dict": {"bn1.weight": torch.ones(64)}, "hook": RunsOnLoad()}, tmp_path / "WFLW_4HG.pth")
    with pytest.raises(UnsafeCheckpointError, match="Refused to load .* for safety"):
        awing_fan(weights=tmp_path / "WFLW_4HG.pth")
    assert not marker.exists()
