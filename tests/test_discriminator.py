"""Multi-scale PatchGAN: GHOST layout, scales, shapes, gradients, checkpoint import."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from faceswap_pl.errors import CheckpointMismatchError, InputShapeError, ModelOptionError
from faceswap_pl.models.discriminator import MultiscaleDiscriminator

GHOST_KEYS = Path(__file__).resolve().parent / "data" / "ghost_state_dict_keys.json"
TINY = dict(ndf=8, n_layers=3, num_scales=3)


def side(size: int, n_layers: int) -> int:
    """Output side of one PatchGAN: stride-2 convs s -> s // 2 + 1, stride-1 convs s -> s + 1."""
    for _ in range(n_layers):
        size = size // 2 + 1
    return size + 2


@pytest.fixture(scope="module")
def ghost_entry() -> dict:
    return json.loads(GHOST_KEYS.read_text())["MultiscaleDiscriminator"]


def test_ghost_state_dict_keys_shapes_and_count(ghost_entry):
    with torch.device("meta"):
        d = MultiscaleDiscriminator()
    assert {k: list(v.shape) for k, v in d.state_dict().items()} == ghost_entry
    assert sum(p.numel() for p in d.parameters()) == 33_463_107


def test_ghost_output_shapes():
    with torch.device("meta"):
        scores = MultiscaleDiscriminator()(torch.empty(2, 3, 256, 256))
    assert [tuple(s.shape) for s in scores] == [(2, 1, 11, 11), (2, 1, 7, 7), (2, 1, 5, 5)]


def test_scales_see_full_then_average_pooled_images():
    torch.manual_seed(0)
    d = MultiscaleDiscriminator(**TINY).eval()
    x = torch.randn(2, 3, 64, 64)
    scores = d(x)
    assert [s.shape[-1] for s in scores] == [side(64, 3), side(32, 3), side(16, 3)]
    half = F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)
    quarter = F.avg_pool2d(half, 3, stride=2, padding=1, count_include_pad=False)
    # as GHOST: layer{num_scales-1} sees the full image, layer0 the coarsest
    torch.testing.assert_close(scores[0], d.layer2(x))
    torch.testing.assert_close(scores[1], d.layer1(half))
    torch.testing.assert_close(scores[2], d.layer0(quarter))
    constant = torch.full((1, 3, 8, 8), 0.7)  # count_include_pad=False keeps a flat image flat
    torch.testing.assert_close(d.downsample(constant), torch.full((1, 3, 4, 4), 0.7))


def test_scores_are_raw_no_sigmoid():
    d = MultiscaleDiscriminator(**TINY)
    with torch.no_grad():
        for i in range(3):
            last = getattr(d, f"layer{i}")[-1]
            last.weight.zero_()
            last.bias.fill_(5.0)
    assert all(torch.equal(s, torch.full_like(s, 5.0)) for s in d(torch.randn(1, 3, 64, 64)))


@pytest.mark.parametrize("norm", ["instance", "batch", "none"])
def test_forward_backward(norm):
    d = MultiscaleDiscriminator(norm=norm, **TINY)
    sum(s.mean() for s in d(torch.randn(2, 3, 64, 64))).backward()
    for name, p in d.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    has_bn = any(k.endswith("running_mean") for k in d.state_dict())
    assert has_bn == (norm == "batch")


def test_bad_options_and_inputs():
    with pytest.raises(ModelOptionError, match=r"'group'.*instance, batch, none"):
        MultiscaleDiscriminator(norm="group")
    with pytest.raises(ModelOptionError, match=r"num_scales 0"):
        MultiscaleDiscriminator(num_scales=0)
    with pytest.raises(InputShapeError, match=r"\(N, 3, H, W\)"):
        MultiscaleDiscriminator(**TINY)(torch.zeros(1, 1, 64, 64))


def test_from_ghost_checkpoint_round_trip(tmp_path, ghost_entry):
    torch.manual_seed(0)
    state = {k: torch.randn(v) * 0.02 for k, v in ghost_entry.items()}
    torch.save(state, tmp_path / "D_0.pth")
    d = MultiscaleDiscriminator.from_ghost_checkpoint(tmp_path / "D_0.pth")
    assert all(torch.equal(d.state_dict()[k], v) for k, v in state.items())


def test_from_ghost_checkpoint_lists_mismatches(tmp_path):
    torch.save(MultiscaleDiscriminator(**TINY).state_dict(), tmp_path / "D_small.pth")
    with pytest.raises(CheckpointMismatchError, match=r"shape mismatches .*layer0\.0\.weight"):
        MultiscaleDiscriminator.from_ghost_checkpoint(tmp_path / "D_small.pth")
