"""The Python API (`from faceswap_pl import Swapper`) on a tiny model: by path, by `models:/` and `runs:/` URIs,
the same pixels as the command line, and its errors."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import save_training_checkpoint

import faceswap_pl
from faceswap_pl import Swapper
from faceswap_pl.cli import main
from faceswap_pl.errors import FaceSwapError
from faceswap_pl.imageio import read_image

TINY = dict(backbone="unet", num_aad_blocks=1, image_size=64, width=0.125, d_ndf=8, d_layers=3, d_scales=2)


@pytest.fixture(scope="module")
def registered(tmp_path_factory):
    """A tiny untrained checkpoint, exported and registered as `tiny@champion` in a SQLite store."""
    from faceswap_pl.training.module import FaceSwapModule

    root = tmp_path_factory.mktemp("api")
    torch.manual_seed(0)
    checkpoint = save_training_checkpoint(FaceSwapModule(**TINY), root / "tiny.ckpt")
    uri = f"sqlite:///{root / 'mlruns.db'}"
    info = faceswap_pl.export_checkpoint(checkpoint, root / "export", register="tiny", tracking_uri=uri, onnx=False)
    return {"checkpoint": checkpoint, "export": root / "export", "uri": uri, "info": info, "root": root}


def test_import_stays_light_until_the_api_is_used():
    code = ("import sys, faceswap_pl; assert 'torch' not in sys.modules; faceswap_pl.Swapper; "
            "assert 'torch' in sys.modules; print(faceswap_pl.__version__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == faceswap_pl.__version__, out.stderr
    with pytest.raises(AttributeError, match="no attribute 'Swaper'"):
        faceswap_pl.Swaper  # noqa: B018


def test_swap_image_by_path_uri_and_cli_give_the_same_pixels(registered, media, tmp_path):
    source, target = media("Tom_Hanks_54745.png"), media("single_face.jpg")
    by_path = Swapper.load(registered["export"]).swap_image(source, target, out=tmp_path / "api.png")
    alias = Swapper.load("models:/tiny@champion", tracking_uri=registered["uri"])
    version = Swapper.load("models:/tiny/1", tracking_uri=registered["uri"])
    run_uri = f"runs:/{registered['info']['registered']['run_id']}/export"
    by_run = Swapper.load(run_uri, tracking_uri=registered["uri"])
    target_rgb = read_image(target)
    for swapper in (alias, version, by_run):
        assert np.array_equal(swapper.swap_image(read_image(source), target_rgb), by_path)
    assert not np.array_equal(by_path, target_rgb)  # a face was swapped
    assert np.array_equal(read_image(tmp_path / "api.png"), by_path)
    assert main(["swap", "--source", str(source), "--target", str(target), "--model", "models:/tiny@champion",
                 "--tracking-uri", registered["uri"], "--out", str(tmp_path / "cli.png")]) == 0
    assert np.array_equal(read_image(tmp_path / "cli.png"), by_path)


def test_swap_video_keeps_the_frame_count(registered, media, tmp_path):
    swapper = Swapper.load(registered["checkpoint"], smooth=0)
    result = swapper.swap_video(media("Tom_Hanks_54745.png"), media("single_face.mp4"), tmp_path / "out.mp4")
    from faceswap_pl.inference.media import count_frames

    assert result["frames"] == count_frames(media("single_face.mp4")) == count_frames(tmp_path / "out.mp4")
    assert result["faces"] > 0


@pytest.mark.parametrize("uri, message", [
    ("models:/nobody@champion", "has no models:/nobody@champion (registered models: tiny)"),
    ("models:/tiny", "names no version"),
    ("runs:/0123456789abcdef/export", "0123456789abcdef"),
])
def test_unknown_uris_are_named(registered, uri, message):
    with pytest.raises(FaceSwapError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Swapper.load(uri, tracking_uri=registered["uri"])


def test_bad_image_arrays_are_named(registered):
    swapper = Swapper.load(registered["export"])
    with pytest.raises(FaceSwapError, match=r"source image array must be RGB uint8 of shape \(H, W, 3\)"):
        swapper.swap_image(np.zeros((64, 64), np.float32), np.zeros((64, 64, 3), np.uint8))


def test_the_readme_python_block_runs_as_written(registered, media, demo_shards, tmp_path, monkeypatch):
    import re
    import shutil
    from pathlib import Path

    from faceswap_pl.export import register_export

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    (block,) = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    # the folder `faceswap-pl demo` leaves: its store with demo-generator@champion, its shards; the user's pictures
    register_export(registered["export"], "demo-generator", tracking_uri="sqlite:///mlruns.db")
    shutil.copytree(demo_shards / "val", tmp_path / "data" / "demo" / "val")
    for name, copy in (("Tom_Hanks_54745.png", "source.jpg"), ("single_face.jpg", "target.jpg"),
                       ("single_face.mp4", "target.mp4")):
        shutil.copy(media(name), tmp_path / copy)
    exec(compile(block, "README.md", "exec"), {})
    assert read_image(tmp_path / "swapped.png").shape == read_image(tmp_path / "target.jpg").shape
    assert (tmp_path / "swapped.mp4").stat().st_size > 0 and (tmp_path / "evaluation" / "report.json").is_file()
