"""A run killed with SIGKILL and resumed with ``--ckpt_path last`` is the run that was never killed.

Training streams pairs from the demo shards (:class:`~faceswap_pl.data.FaceSwapDataModule`, 3 batches per epoch,
a checkpoint after every iteration). The killed run is resumed in the same folder and compared with an
uninterrupted run of the same config: G, D, the EMA generator, both optimizers' states, the iteration counter and
every logged loss value must be equal (``torch.equal``), in one MLflow run.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest
import torch

from faceswap_pl.cli import main
from faceswap_pl.models.importers.checkpoint import read_torch_file

ROOT = Path(__file__).resolve().parents[1]
ITERATIONS = 8
BATCHES_PER_EPOCH = 3  # epoch_pairs 6, batch 2


def _args(shards: Path, workers: int) -> list[str]:
    return ["--config", str(ROOT / "experiments" / "tiny_cpu.yaml"),
            "--config", str(ROOT / "experiments" / "data" / "shards.yaml"),
            f"--data.init_args.train={shards / 'train'}", "--data.init_args.val=null",
            "--data.init_args.batch_size=2", "--data.init_args.epoch_pairs=6", "--data.init_args.buffer=8",
            f"--data.init_args.num_workers={workers}", "--data.init_args.identity_view=null",
            "--data.init_args.eval_pairs=4",
            f"--model.max_iterations={ITERATIONS}", "--model.width=0.0625", "--model.ema_decay=0.9",
            "--trainer.enable_progress_bar=false", "--trainer.limit_val_batches=0", "--trainer.log_every_n_steps=1",
            "--trainer.callbacks+=lightning.pytorch.callbacks.ModelCheckpoint",
            "--trainer.callbacks.save_last=true", "--trainer.callbacks.save_top_k=0",
            "--trainer.callbacks.every_n_train_steps=1"]


def _last(folder: Path) -> Path:
    (path,) = folder.glob("outputs/*/*/checkpoints/last.ckpt")
    return path


def _iteration(path: Path) -> int:
    return int(read_torch_file(path)["state_dict"]["iteration"])


def _curves(folder: Path) -> dict[str, dict[int, float]]:
    """Every train/* metric of the folder's one run: step -> the value logged last for that step."""
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{folder / 'mlruns.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("tiny_cpu").experiment_id])
    curves = {}
    for name in run.data.metrics:
        if name.startswith("train/"):
            history = sorted(client.get_metric_history(run.info.run_id, name), key=lambda m: (m.step, m.timestamp))
            curves[name] = {m.step: m.value for m in history}
    return curves


@pytest.fixture(scope="module")
def uninterrupted(demo_shards, tmp_path_factory):
    """(workers, extra arguments) -> (folder, checkpoint) of a run that was never stopped."""
    done = {}

    def run(workers: int, extra: tuple[str, ...] = ()):
        if (workers, extra) not in done:
            folder = tmp_path_factory.mktemp(f"uninterrupted{workers}")
            cwd = os.getcwd()
            os.chdir(folder)
            try:
                assert main(["fit", *_args(demo_shards, workers), *extra]) == 0
            finally:
                os.chdir(cwd)
            done[workers, extra] = folder, read_torch_file(_last(folder))
        return done[workers, extra]

    return run


KILLER = """
import os, signal
from lightning.pytorch.callbacks import Callback

class KillAt(Callback):
    \"\"\"SIGKILL this process when iteration {n} is about to start (the checkpoint of iteration {n} - 1 is written).\"\"\"
    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if int(module.iteration) == {n}:
            os.kill(os.getpid(), signal.SIGKILL)
"""


def _kill(folder: Path, args: list[str], at: int | None) -> list[str]:
    """Run `fit` in ``folder`` and SIGKILL it: at the start of iteration ``at`` (zero-based), or while a
    checkpoint is being written after iteration 2 when ``at`` is None. Returns the arguments to resume with (the
    same config; the killer, which is part of it, is disarmed)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if at is not None:
        (folder / "killer.py").write_text(KILLER.format(n=at))
        env["PYTHONPATH"] = os.pathsep.join([str(folder), env.get("PYTHONPATH", "")])
        args = [*args, "--trainer.callbacks+=killer.KillAt"]
    with open(folder / "killed.log", "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "faceswap_pl.cli", "fit", *args], cwd=folder, stdout=log,
                                stderr=subprocess.STDOUT, env=env)
    deadline = time.time() + 300
    try:
        while time.time() < deadline and proc.poll() is None and (at is not None or not _writing(folder)):
            time.sleep(0.005)
        if at is None:
            assert proc.poll() is None, "the run ended before it could be killed: " + _log(folder)
        assert time.time() < deadline, _log(folder)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, _log(folder)
    if at is not None:
        (folder / "killer.py").write_text(KILLER.format(n=-1))
        sys.path.insert(0, str(folder))
    return args


def _log(folder: Path) -> str:
    return (folder / "killed.log").read_text()[-3000:]


def _writing(folder: Path) -> bool:
    """A checkpoint write is under way (its temporary file exists) after iteration 2."""
    found = list(folder.glob("outputs/*/*/checkpoints/last.ckpt"))
    try:
        done = bool(found) and _iteration(found[0]) >= 2
    except Exception:  # replaced while read
        return False
    return done and bool(list(folder.glob("outputs/*/*/checkpoints/.*partial*")))


def _equal_states(got: dict, want: dict) -> list[str]:
    """Names of the entries of two checkpoints (weights, EMA, optimizer states) that are not equal."""
    differ = [k for k in want["state_dict"] if not torch.equal(got["state_dict"][k], want["state_dict"][k])]
    assert len(got["optimizer_states"]) == len(want["optimizer_states"]) == 2
    for i, (a, b) in enumerate(zip(got["optimizer_states"], want["optimizer_states"])):
        for param, state in b["state"].items():
            for key, value in state.items():
                other = a["state"][param][key]
                if not (torch.equal(other, value) if torch.is_tensor(value) else other == value):
                    differ.append(f"optimizer {i} param {param} {key}")
    return differ


SHORT_EPOCHS = ("--trainer.limit_train_batches=2",)  # Lightning ends each epoch before the loader's 3 batches


@pytest.mark.parametrize("workers, at, extra, name", [
    (0, BATCHES_PER_EPOCH, (), "right after the first epoch ended"),
    (2, BATCHES_PER_EPOCH + 1, (), "one batch into the second epoch"),
    (2, 2 * BATCHES_PER_EPOCH - 1, (), "before the last batch of the second epoch"),
    (0, None, (), "during a checkpoint write"),
    (0, 2, SHORT_EPOCHS, "at the end of an epoch Lightning cut short"),
])
def test_a_killed_run_resumes_bit_for_bit(workers, at, extra, name, demo_shards, uninterrupted, tmp_path,
                                          monkeypatch):
    ref_folder, reference = uninterrupted(workers, extra)
    args = _kill(tmp_path, [*_args(demo_shards, workers), *extra], at)
    killed_at = _iteration(_last(tmp_path))
    assert killed_at == at if at is not None else 2 <= killed_at < ITERATIONS, name
    monkeypatch.chdir(tmp_path)
    try:
        assert main(["fit", *args, "--ckpt_path", "last"]) == 0
    finally:
        sys.path[:] = [p for p in sys.path if p != str(tmp_path)]
        sys.modules.pop("killer", None)
    resumed = read_torch_file(_last(tmp_path))
    assert _iteration(_last(tmp_path)) == ITERATIONS
    assert _equal_states(resumed, reference) == [], f"killed {name} (iteration {killed_at})"
    assert _curves(tmp_path) == _curves(ref_folder)
    assert resumed["loops"]["fit_loop"]["state_dict"]["combined_loader"] == \
        reference["loops"]["fit_loop"]["state_dict"]["combined_loader"]
