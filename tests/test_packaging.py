"""The installable product: shipped configs by name, and a built wheel in a fresh virtual environment (`pip check`,
`--version`, the demo in an empty folder, the README's Python block)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from faceswap_pl.configs import resolve_config, shipped_names

ROOT = Path(__file__).resolve().parents[1]


def test_shipped_configs_are_found_by_name_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert Path(resolve_config("ghost")) == ROOT / "experiments" / "ghost.yaml"
    assert Path(resolve_config("data/shards")) == ROOT / "experiments" / "data" / "shards.yaml"
    assert Path(resolve_config("experiments/demo.yaml")) == ROOT / "experiments" / "demo.yaml"
    assert Path(resolve_config("ablation_cpu", "sweeps")) == ROOT / "sweeps" / "ablation_cpu.yaml"
    (tmp_path / "ghost").write_text("model: {}\n")  # a file of one's own wins over the shipped name
    assert resolve_config("ghost") == "ghost"
    assert resolve_config("nothing_like_it") == "nothing_like_it"
    assert {"ghost", "demo", "tiny_cpu", "data/shards"} <= set(shipped_names("experiments"))
    assert {"ablation", "ablation_cpu", "tiny_cpu"} <= set(shipped_names("sweeps"))


def _run(command: list[str], cwd: Path, env: dict, timeout: int = 1800) -> str:
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(command)} -> {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.mark.slow
@pytest.mark.ci
@pytest.mark.timeout(3600)
def test_the_wheel_installs_and_runs_the_demo_in_an_empty_folder(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "MLFLOW_TRACKING_URI")}
    dist = tmp_path / "dist"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist),
          str(ROOT)], tmp_path, env)
    (wheel,) = dist.glob("faceswap_pl-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "faceswap_pl/_shipped/experiments/ghost.yaml" in names and "faceswap_pl/_shipped/sweeps/ablation.yaml" in names
    assert any(n.endswith("licenses/LICENSE") for n in names)

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], tmp_path, env)
    python = venv / "bin" / "python"
    _run([str(python), "-m", "pip", "install", "-q", "-c", str(ROOT / "constraints.txt"), str(wheel)], tmp_path, env)
    assert "No broken requirements found" in _run([str(python), "-m", "pip", "check"], tmp_path, env)
    listed = _run([str(python), "-m", "pip", "list"], tmp_path, env).lower()
    assert "opencv-python-headless" in listed and "opencv-python " not in listed  # one OpenCV

    empty = tmp_path / "empty"
    empty.mkdir()
    faceswap = str(venv / "bin" / "faceswap-pl")
    assert _run([faceswap, "--version"], empty, env).startswith("faceswap-pl ")
    located = _run([str(python), "-c", "import faceswap_pl; print(faceswap_pl.__file__)"], empty, env)
    assert str(venv) in located  # the installed package, not the checkout
    _run([faceswap, "demo", "--iterations", "4"], empty, env)
    assert (empty / "mlruns.db").is_file() and list(empty.glob("outputs/*/*/swaps/single_face.mp4"))

    # the README's Python block, where the demo ran, with the demo's pictures as the user's
    import shutil

    from faceswap_pl import zoo

    for name, copy in (("Tom_Hanks_54745.png", "source.jpg"), ("single_face.jpg", "target.jpg"),
                       ("single_face.mp4", "target.mp4")):
        shutil.copy(zoo.media_path(name), empty / copy)
    (block,) = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
    _run([str(python), "-c", block], empty, env)
    assert (empty / "swapped.png").is_file() and (empty / "evaluation" / "report.json").is_file()


def test_fit_and_sweep_take_shipped_names(tmp_path):
    out = subprocess.run([sys.executable, "-m", "faceswap_pl.cli", "fit", "--config", "tiny_cpu", "--config",
                          "data/synthetic", "--print_config"], cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "experiment_name: tiny_cpu" in out.stdout and "SyntheticPairDataModule" in out.stdout

    from faceswap_pl.sweep.spec import load_spec

    spec = load_spec("ablation_cpu")
    assert spec.name == "ablation_cpu" and spec.base_config == [str(ROOT / "experiments" / "demo.yaml")]
