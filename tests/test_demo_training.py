"""The first real training: the tiny model on shards built from the offline media learns."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from faceswap_pl.cli import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.ci
@pytest.mark.timeout(2400)  # minutes of CPU training; slower on a loaded machine
def test_tiny_training_on_demo_shards_lowers_the_generator_losses(tmp_path, monkeypatch):
    import mlflow
    from data_pipelines import build_demo

    monkeypatch.chdir(tmp_path)
    build_demo(tmp_path / "data" / "demo", size=64, progress=False)
    assert main(["fit", "--config", str(ROOT / "experiments" / "demo.yaml"), "--model.max_iterations=60",
                 "--trainer.enable_progress_bar=false", "--trainer.check_val_every_n_epoch=1000"]) == 0
    client = mlflow.MlflowClient(tracking_uri="sqlite:///mlruns.db")
    run = client.search_runs([client.get_experiment_by_name("demo").experiment_id])[0]

    def curve(key):
        history = sorted(client.get_metric_history(run.info.run_id, key), key=lambda m: m.step)
        return np.array([m.value for m in history])

    identity, attributes = curve("train/id"), curve("train/att")
    assert len(identity) >= 10
    # the swap moves toward the source identity and keeps the target's attributes better than at the start
    assert identity[-3:].mean() < 0.8 * identity[:3].mean()
    assert attributes[-3:].mean() < 0.5 * attributes[:3].mean()
    assert list(Path("outputs").rglob("last.ckpt"))
