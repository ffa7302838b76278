"""Pre-emption: a training killed with SIGKILL resumes with `--ckpt_path last` at its iteration, in its MLflow run;
checkpoint writes are atomic."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from faceswap_pl.cli import main
from faceswap_pl.files import atomic_write

ROOT = Path(__file__).resolve().parents[1]
ARGS = ["--config", str(ROOT / "experiments" / "tiny_cpu.yaml"), "--model.max_iterations=8",
        "--model.width=0.0625", "--trainer.enable_progress_bar=false", "--trainer.limit_val_batches=0",
        "--trainer.log_every_n_steps=1",
        "--data.init_args.train_pairs=8",  # batch 4: 2 iterations per epoch
        "--trainer.callbacks+=lightning.pytorch.callbacks.ModelCheckpoint",
        "--trainer.callbacks.save_last=true", "--trainer.callbacks.save_top_k=0",  # as ghost.yaml: last.ckpt only
        "--trainer.callbacks.every_n_train_steps=2"]


def _iteration(path: Path) -> int:
    from faceswap_pl.models.importers.checkpoint import read_torch_file

    return int(read_torch_file(path)["state_dict"]["iteration"])


def test_killed_training_resumes_in_the_same_mlflow_run(tmp_path, monkeypatch):
    import mlflow

    monkeypatch.chdir(tmp_path)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(tmp_path / "first.log", "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "faceswap_pl.cli", "fit", *ARGS], stdout=log,
                                stderr=subprocess.STDOUT, env=env)
    deadline, last = time.time() + 300, None
    while time.time() < deadline and proc.poll() is None:
        found = list(Path("outputs").glob("*/*/checkpoints/last.ckpt"))
        if found and _iteration(found[0]) >= 3:
            last = found[0]
            break
        time.sleep(0.2)
    assert last is not None, (tmp_path / "first.log").read_text()[-3000:]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = _iteration(last)
    assert 3 <= killed_at < 8
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlruns.db'}")
    experiment = client.get_experiment_by_name("tiny_cpu")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "RUNNING"  # killed: nobody closed it
    assert last.parent.parent.name == run.info.run_id

    assert main(["fit", *ARGS, "--ckpt_path", "last"]) == 0
    runs = client.search_runs([experiment.experiment_id])
    assert [r.info.run_id for r in runs] == [run.info.run_id]  # the same run, not a new one
    assert runs[0].info.status == "FINISHED"
    assert _iteration(last) == 8
    steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, "train/loss_g"))
    # one curve: iterations before the kill and after the resume; only those after the checkpoint run twice
    assert sorted(set(steps)) == list(range(8))
    assert all(steps.count(s) == 1 for s in range(killed_at))
    assert not list(Path("outputs").rglob(".*partial*"))


def test_resume_without_a_checkpoint_starts_from_the_beginning(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    args = [a for a in ARGS if "max_iterations" not in a] + ["--model.max_iterations=2"]
    assert main(["fit", *args, "--ckpt_path", "last"]) == 0
    assert "training starts from the beginning" in capsys.readouterr().out
    (last,) = Path("outputs").glob("*/*/checkpoints/last.ckpt")
    assert _iteration(last) == 2


def test_atomic_save_keeps_the_old_file_when_the_write_dies(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    atomic_write(path, lambda handle: torch.save({"iteration": 1}, handle))

    def dies_half_way(obj, handle):
        handle.write(b"PK\x03\x04 half a checkpoint")
        raise KeyboardInterrupt  # the job is pre-empted during the write

    monkeypatch.setattr(torch, "save", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, lambda handle: torch.save({"iteration": 2}, handle))
    monkeypatch.undo()
    assert torch.load(path, weights_only=True) == {"iteration": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]


class _MakeDirOnLoad:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return os.makedirs, (self.path,)


def test_ckpt_path_that_would_run_code_is_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    marker = tmp_path / "ran"
    torch.save({"state_dict": {}, "hook": _MakeDirOnLoad(str(marker))}, tmp_path / "evil.ckpt")
    assert main(["fit", *ARGS, "--ckpt_path", str(tmp_path / "evil.ckpt")]) == 2
    assert "Refused" in capsys.readouterr().err and not marker.exists()
    assert main(["validate", *ARGS, "--ckpt_path", str(tmp_path / "missing.ckpt")]) == 2
    assert "missing.ckpt does not exist" in capsys.readouterr().err


def test_last_never_resumes_another_job_of_the_experiment(tmp_path, monkeypatch, capsys):
    """Two configs share the experiment `tiny_cpu`: `--ckpt_path last` of the second does not pick up the first's
    checkpoint; naming the first run's id does."""
    import mlflow

    monkeypatch.chdir(tmp_path)
    first = [a for a in ARGS if "max_iterations" not in a] + ["--model.max_iterations=2"]
    assert main(["fit", *first]) == 0
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlruns.db'}")
    experiment = client.get_experiment_by_name("tiny_cpu").experiment_id
    (run_a,) = client.search_runs([experiment])
    capsys.readouterr()
    assert main(["fit", *first, "--model.w_id=10", "--ckpt_path", "last"]) == 0
    out = capsys.readouterr().out
    assert "no run of experiment 'tiny_cpu' with this config has a last.ckpt" in out and run_a.info.run_id in out
    assert f"the newest, {run_a.info.run_id}, differs in model.w_id (" in out  # and in nothing else
    assert "differs in model.w_id (" in out and ") and " not in out.split("differs in")[1].split(";")[0]
    assert len(client.search_runs([experiment])) == 2  # a new run, started from the beginning
    assert main(["fit", *[a for a in first if "max_iterations" not in a], "--model.max_iterations=3",
                 f"--trainer.logger.init_args.run_id={run_a.info.run_id}", "--ckpt_path", "last"]) == 0
    assert f"in MLflow run {run_a.info.run_id}" in capsys.readouterr().out
    assert _iteration(Path("outputs") / experiment / run_a.info.run_id / "checkpoints" / "last.ckpt") == 3


def test_fingerprint_reads_whole_floats_as_ints():
    """jsonargparse reads ``--trainer.limit_val_batches=0`` as 0 or 0.0 depending on what the process did before;
    a resumed job must match its run either way, and a real change of value must not."""
    from faceswap_pl.training.checkpointing import config_fingerprint

    def config(value):
        return {"trainer": {"limit_val_batches": value, "callbacks": [{"init_args": {"every_n": value}}]},
                "ckpt_path": "last"}

    assert config_fingerprint(config(0)) == config_fingerprint(config(0.0))
    assert config_fingerprint(config(0)) != config_fingerprint(config(0.5))
    assert config_fingerprint(config(0)) == config_fingerprint({**config(0), "ckpt_path": None})
