"""The trainable restoration block: FaceRestorer, the on-the-fly degradation, RestorationModule,
`load_restorer` and `faceswap-pl restoration fit` (tiny sizes; MLflow stays inside tmp_path)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from faceswap_pl.cli import main
from faceswap_pl.data.degrade import degrade, psnr
from faceswap_pl.errors import CheckpointMismatchError, CheckpointNotFoundError, FaceSwapError, ModelFileError
from faceswap_pl.models.restoration import FaceRestorer, load_restorer, save_restorer
from faceswap_pl.training.restoration import RestorationModule, edge_l1

ROOT = Path(__file__).resolve().parents[1]
TINY = str(ROOT / "experiments" / "restoration_tiny.yaml")


def textures(n: int = 4, size: int = 32, seed: int = 0) -> torch.Tensor:
    """(n, 3, size, size) in [-1, 1] with detail at a 4-pixel scale (which blur and downscaling remove)."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, size // 4, size // 4, generator=g) * 2 - 1
    return F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Run this file on one intra-op thread: its tensors are too small to gain from more, and on a loaded
    machine each parallel region of two threads can wait milliseconds for a descheduled partner."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """One `faceswap-pl restoration fit` on the tiny config, run in a temporary folder: (folder, return code)."""
    folder = tmp_path_factory.mktemp("restoration_fit")
    in_repo = {name: (ROOT / name).exists() for name in ("mlruns", "mlruns.db")}
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)
        code = main(["restoration", "fit", "--config", TINY, "--trainer.max_steps=3",
                     "--data.init_args.train_pairs=12", "--data.init_args.val_pairs=4",
                     "--trainer.num_sanity_val_steps=0", "--trainer.enable_progress_bar=false",
                     f"--trainer.default_root_dir={folder / 'outputs'}"])
    assert {name: (ROOT / name).exists() for name in in_repo} == in_repo, "MLflow wrote into the repository"
    return folder, code


def checkpoint_of(folder: Path) -> Path:
    found = sorted((folder / "outputs").rglob("*.ckpt"))
    assert len(found) == 1, found
    return found[0]


# ---- degradation ----

def test_degradation_is_deterministic_for_a_seed_and_degrades():
    clean = textures(6, 32)
    first = degrade(clean, torch.Generator().manual_seed(5))
    again = degrade(clean, torch.Generator().manual_seed(5))
    other = degrade(clean, torch.Generator().manual_seed(6))
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert first.shape == clean.shape and first.dtype == torch.float32
    assert first.min() >= -1 and first.max() <= 1
    assert psnr(first, clean).max() < 30.0  # every image lost detail (identical images: 100 dB)
    assert psnr(clean, clean).min() > 90.0


def test_degradation_strength_follows_its_ranges():
    clean = textures(4, 32)
    mild = degrade(clean, torch.Generator().manual_seed(0), blur_sigma=(0.0, 0.0), downscale=(1.0, 1.0),
                   noise_std=(0.0, 0.0), jpeg_prob=0.0)
    assert torch.allclose(mild, clean, atol=1e-6)  # nothing asked, nothing done
    blocky = degrade(clean, torch.Generator().manual_seed(0), blur_sigma=(0.0, 0.0), downscale=(1.0, 1.0),
                     noise_std=(0.0, 0.0), jpeg_prob=1.0, jpeg_quality=(10, 10))
    fine = degrade(clean, torch.Generator().manual_seed(0), blur_sigma=(0.0, 0.0), downscale=(1.0, 1.0),
                   noise_std=(0.0, 0.0), jpeg_prob=1.0, jpeg_quality=(95, 95))
    assert (psnr(blocky, clean) < psnr(fine, clean)).all() and psnr(fine, clean).min() > 35.0


# ---- the network ----

def test_restorer_keeps_shape_and_range_and_rejects_bad_sizes():
    net = FaceRestorer(width=8, depth=2, blocks=1)
    x = textures(2, 32)
    assert torch.equal(net(x), x)  # the head starts at zero: an untrained restorer is the identity
    torch.nn.init.normal_(net.head.weight, std=5.0)  # large corrections must still be clamped
    y = net(torch.cat([x, x], dim=-1))  # 32 x 64: any size divisible by 2**depth
    assert y.shape == (2, 3, 32, 64) and y.min() >= -1 and y.max() <= 1 and (y.abs() == 1).any()
    y.abs().mean().backward()  # the clamp passes gradients straight through
    assert net.head.weight.grad.abs().sum() > 0
    assert FaceRestorer(**net.config).config == {"width": 8, "depth": 2, "blocks": 1}
    with pytest.raises(ValueError, match="divisible by 4"):
        net(torch.zeros(1, 3, 30, 32))
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        net(torch.zeros(1, 1, 32, 32))
    with pytest.raises(ValueError, match="width >= 1"):
        FaceRestorer(width=0)


def test_training_on_one_batch_beats_the_degraded_input():
    """Known answer: 60 Adam steps on one fixed degraded batch must restore better than doing nothing."""
    torch.manual_seed(0)
    clean = textures(4, 32)
    module = RestorationModule(width=16, depth=2, blocks=1, lr=1e-3)
    degraded = module.degrade(clean, seed=123)
    optimizer = module.configure_optimizers()
    l1_degraded = F.l1_loss(degraded, clean).item()
    for _ in range(60):
        restored = module(degraded)
        loss = F.l1_loss(restored, clean) + module.hparams.w_edge * edge_l1(restored, clean)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        l1_restored = F.l1_loss(module(degraded), clean).item()
    print(f"L1 to the clean batch: degraded {l1_degraded:.4f}, restored {l1_restored:.4f}")
    assert l1_restored < 0.6 * l1_degraded


def test_module_options_are_checked():
    with pytest.raises(FaceSwapError, match="model.downscale"):
        RestorationModule(downscale=(4.0, 1.0))
    with pytest.raises(FaceSwapError, match="model.jpeg_prob"):
        RestorationModule(jpeg_prob=1.5)


# ---- the command line and the checkpoint ----

def test_cli_restoration_fit_logs_to_mlflow(tiny_run):
    import mlflow

    folder, code = tiny_run
    assert code == 0
    assert (folder / "mlruns.db").is_file()
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{folder / 'mlruns.db'}")
    run = client.search_runs([client.get_experiment_by_name("restoration_tiny").experiment_id])[0]
    assert run.data.params["width"] == "16" and run.data.params["depth"] == "3"
    assert {"train/l1", "train/l1_degraded", "val/psnr", "val/psnr_degraded"} <= set(run.data.metrics)
    assert 10.0 < run.data.metrics["val/psnr_degraded"] < 60.0
    assert [a.path for a in client.list_artifacts(run.info.run_id)] == ["config.yaml"]
    assert max(m.step for m in client.get_metric_history(run.info.run_id, "train/l1")) <= 2  # 3 iterations


def test_load_restorer_round_trip_from_the_checkpoint(tiny_run, tmp_path):
    folder, code = tiny_run
    assert code == 0
    ckpt = checkpoint_of(folder)
    restorer = load_restorer(ckpt)
    assert not restorer.training and restorer.config == {"width": 16, "depth": 3, "blocks": 1}
    module = RestorationModule.load_from_checkpoint(ckpt, map_location="cpu", weights_only=True).eval()
    x = textures(2, 64, seed=3)
    with torch.no_grad():
        expected = module(x)
        assert torch.equal(restorer(x), expected)
        assert not torch.equal(expected, x)  # trained: no longer the identity
        exported = tmp_path / "restorer.safetensors"
        save_restorer(restorer, exported)
        assert torch.equal(load_restorer(exported)(x), expected)


def test_load_restorer_errors_name_the_file(tiny_run, tmp_path):
    with pytest.raises(CheckpointNotFoundError, match="nowhere.ckpt"):
        load_restorer(tmp_path / "nowhere.ckpt")

    swap_ckpt = tmp_path / "faceswap.ckpt"  # the layout `faceswap-pl fit` writes
    torch.save({"state_dict": {"generator.generator.conv.weight": torch.zeros(2)},
                "hyper_parameters": {"backbone": "unet"}}, swap_ckpt)
    with pytest.raises(ModelFileError, match=r"faceswap\.ckpt.*face-swap training checkpoint"):
        load_restorer(swap_ckpt)

    folder, _ = tiny_run
    raw = torch.load(checkpoint_of(folder), map_location="cpu", weights_only=True)
    raw["restorer_config"]["blocks"] = 2  # weights of a 1-block restorer declared as 2 blocks
    edited = tmp_path / "edited.ckpt"
    torch.save(raw, edited)
    with pytest.raises(CheckpointMismatchError, match=r"edited\.ckpt.*missing keys"):
        load_restorer(edited)

    lonely = tmp_path / "weights.safetensors"
    save_restorer(FaceRestorer(width=4, depth=1, blocks=0), lonely)
    lonely.with_suffix(".json").unlink()
    with pytest.raises(ModelFileError, match=r"weights\.safetensors.*JSON config"):
        load_restorer(lonely)


def test_restoration_config_parses(capsys):
    with pytest.raises(SystemExit) as done:
        main(["restoration", "fit", "--config", str(ROOT / "experiments" / "restoration.yaml"), "--print_config"])
    assert done.value.code == 0
    assert "FaceSwapDataModule" in capsys.readouterr().out
