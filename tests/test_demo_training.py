"""The demo end to end (`faceswap-pl demo`): shards from the offline media, training that learns, evaluation,
export and registry, and a swapped image and video."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from faceswap_pl.cli import main


@pytest.mark.slow
@pytest.mark.ci
@pytest.mark.timeout(3600)  # about 10 minutes of CPU training and swapping; slower on a loaded machine
def test_demo_trains_evaluates_exports_and_swaps(tmp_path, monkeypatch, capsys):
    import mlflow

    from faceswap_pl.inference.media import SYNTHETIC_TAG, image_tag, probe_video, video_tag

    monkeypatch.chdir(tmp_path)
    assert main(["demo"]) == 0
    printed = capsys.readouterr().out
    client = mlflow.MlflowClient(tracking_uri="sqlite:///mlruns.db")
    run = client.search_runs([client.get_experiment_by_name("demo").experiment_id])[0]

    def curve(key):
        history = sorted(client.get_metric_history(run.info.run_id, key), key=lambda m: (m.step, m.timestamp))
        return np.array([m.value for m in history])

    # training learns: the swap moves toward the source identity and keeps the target's attributes
    identity, attributes = curve("train/id"), curve("train/att")
    assert len(identity) >= 30
    assert identity[-5:].mean() < 0.6 * identity[:5].mean()
    assert attributes[-5:].mean() < 0.5 * attributes[:5].mean()
    # held-out people: the evaluation recognizer (FaceNet, never trained against) sees the swaps move toward
    # their sources, and head pose follows the target better than at the start
    id_cos, pose = curve("eval/id_cos"), curve("eval/pose_deg")
    assert len(id_cos) >= 4 and id_cos[-1] > 1.5 * id_cos[0] and id_cos[-1] - id_cos[0] > 0.03, id_cos
    # pose error drops by more than a fifth (9.69 -> 6.96 degrees on a 2-core x86_64 machine; between, it moves
    # from 7.8 to 10.1, so a tighter bound would test the machine's rounding, not the training)
    assert pose[-1] < 0.8 * pose[0], pose
    assert "swaps:" in printed and "mlflow ui --backend-store-uri sqlite:///" in printed

    run_dir = next(Path("outputs").glob(f"*/{run.info.run_id}"))
    report = json.loads((run_dir / "evaluation" / "report.json").read_text())
    assert report["metrics"]["id_cos"] > 0.05
    assert (run_dir / "export" / "generator.onnx").is_file()
    assert client.get_model_version_by_alias("demo-generator", "champion").run_id == run.info.run_id

    swaps = run_dir / "swaps"
    assert image_tag(swaps / "single_face.png") == SYNTHETIC_TAG
    video = probe_video(swaps / "single_face.mp4")
    assert (video.frames, video.fps, video.has_audio) == (72, Fraction(30), True)
    assert video_tag(swaps / "single_face.mp4") == SYNTHETIC_TAG
    summary = json.loads((swaps / "summary.json").read_text())
    # the swapped face in the picture is closer to the source than the person who was there
    assert summary["cos_swap_to_source"] > summary["cos_target_to_source"] + 0.05, summary
