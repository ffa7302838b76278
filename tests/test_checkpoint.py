"""Checkpoint reading and strict loading: formats, wrappers, refusals and mismatch messages (tiny modules)."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from faceswap_pl.errors import (
    CheckpointMismatchError,
    CheckpointNotFoundError,
    CheckpointReadError,
    FaceSwapError,
    UnsafeCheckpointError,
)
from faceswap_pl.models.importers.checkpoint import load_checkpoint_file, load_state_dict_strict


class _MakeDirOnLoad:
    """Pickles as "call os.makedirs(path)": harmless, and its effect shows whether it ran."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (os.makedirs, (self.path,))


def _tiny() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Linear(4, 2))


def _equal(a: dict, b: dict) -> bool:
    return sorted(a) == sorted(b) and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("wrap", [
    lambda sd: sd,
    lambda sd: {"state_dict": sd, "epoch": 3},
    lambda sd: {"model": {k: v for k, v in sd.items()}, "optimizer": {"lr": 0.1}},
    lambda sd: {"state_dict": {f"module.{k}": v for k, v in sd.items()}, "best_nme": np.float64(0.04)},
])
def test_pth_wrappers_and_prefix_are_undone(tmp_path, wrap):
    sd = _tiny().state_dict()
    torch.save(wrap(sd), tmp_path / "w.pth")
    assert _equal(load_checkpoint_file(tmp_path / "w.pth"), sd)


def test_safetensors_and_ckpt_extensions(tmp_path):
    sd = {k: v.contiguous() for k, v in _tiny().state_dict().items()}
    save_file(sd, str(tmp_path / "w.safetensors"))
    torch.save({"state_dict": sd}, tmp_path / "w.ckpt")
    assert _equal(load_checkpoint_file(tmp_path / "w.safetensors"), sd)
    assert _equal(load_checkpoint_file(str(tmp_path / "w.ckpt")), sd)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(CheckpointNotFoundError, match="does not exist"):
        load_checkpoint_file(tmp_path / "nope.pth")
    with pytest.raises(CheckpointNotFoundError, match="is a directory"):
        load_checkpoint_file(tmp_path)
    assert issubclass(CheckpointNotFoundError, FaceSwapError)


@pytest.mark.parametrize("name, payload", [
    ("garbage.pth", b"this is not a checkpoint" * 20),
    ("garbage.safetensors", b"\x08\x00\x00\x00\x00\x00\x00\x00{broken}"),
])
def test_corrupt_files_are_reported_as_unreadable(tmp_path, name, payload):
    (tmp_path / name).write_bytes(payload)
    with pytest.raises(CheckpointReadError, match="corrupt, truncated") as info:
        load_checkpoint_file(tmp_path / name)
    assert not isinstance(info.value, UnsafeCheckpointError)


def test_truncated_pth_is_unreadable(tmp_path):
    torch.save(_tiny().state_dict(), tmp_path / "full.pth")
    data = (tmp_path / "full.pth").read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointReadError, match="corrupt, truncated"):
        load_checkpoint_file(tmp_path / "cut.pth")


@pytest.mark.parametrize("zip_format", [True, False])
def test_pickle_that_runs_code_is_refused_and_not_run(tmp_path, zip_format):
    marker = tmp_path / "ran"
    payload = {"state_dict": _tiny().state_dict(), "hook": _MakeDirOnLoad(str(marker))}
    torch.save(payload, tmp_path / "evil.pth", _use_new_zipfile_serialization=zip_format)
    with pytest.raises(UnsafeCheckpointError) as info:
        load_checkpoint_file(tmp_path / "evil.pth")
    message = str(info.value)
    assert "Refused" in message and "for safety" in message and "os.makedirs" in message
    assert not marker.exists()


def test_not_a_state_dict(tmp_path):
    torch.save([torch.zeros(1)], tmp_path / "list.pth")
    torch.save({"epoch": 3, "lr": 0.1}, tmp_path / "meta.pth")
    with pytest.raises(CheckpointReadError, match="holds a list, not a state dict"):
        load_checkpoint_file(tmp_path / "list.pth")
    with pytest.raises(CheckpointReadError, match="keys epoch, lr"):
        load_checkpoint_file(tmp_path / "meta.pth")


def test_strict_load_message_lists_everything_with_counts():
    module = _tiny()
    sd = module.state_dict()
    sd["0.kernel"] = sd.pop("0.weight")                      # renamed: 1 missing + 1 unexpected
    sd["2.weight"] = torch.zeros(3, 4)                       # wrong shape
    sd.update({f"extra.{i}": torch.zeros(1) for i in range(10)})  # 10 more unexpected
    with pytest.raises(CheckpointMismatchError) as info:
        load_state_dict_strict(module, sd, "Tiny weights 'x.pth'", hint="Use the tiny file.")
    message = str(info.value)
    assert message.startswith("Tiny weights 'x.pth' do not fit the network: 1 missing keys (0.weight)")
    assert "11 unexpected keys (0.kernel, extra.0," in message and "... and 3 more)" in message
    assert "1 shape mismatches (2.weight: checkpoint [3, 4] vs network [2, 4])" in message
    assert message.endswith("Use the tiny file.")
    default = pytest.raises(CheckpointMismatchError, match="different backbone")
    with default:
        load_state_dict_strict(module, {"x": torch.zeros(1)}, "Other weights")


def test_strict_load_fills_absent_batchnorm_counters():
    source, target = _tiny(), _tiny()
    with torch.no_grad():
        source[1].running_mean.fill_(0.5)
    sd = {k: v for k, v in source.state_dict().items() if not k.endswith("num_batches_tracked")}
    target[1].num_batches_tracked.fill_(9)
    load_state_dict_strict(target, sd, "weights")
    assert torch.equal(target[1].running_mean, torch.full((4,), 0.5))
    assert target[1].num_batches_tracked.item() == 0


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_raw_pickle_is_unreadable_not_unsafe(tmp_path):
    # a raw pickle (not torch.save) without any code in it: not a weight file, but nothing was refused
    (tmp_path / "raw.pth").write_bytes(pickle.dumps({"a": 1}, protocol=4))
    with pytest.raises(CheckpointReadError) as info:
        load_checkpoint_file(tmp_path / "raw.pth")
    assert not isinstance(info.value, UnsafeCheckpointError)
