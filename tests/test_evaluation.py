"""Evaluation during training (callback, MLflow, checkpoint selection) and the `evaluate` harness."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import lightning as L
import pytest
import torch

from faceswap_pl.callbacks.evaluation import EvaluationCallback
from faceswap_pl.cli import main
from faceswap_pl.data import FaceSwapDataModule
from faceswap_pl.errors import FaceSwapError
from faceswap_pl.inference.evaluate import evaluate_checkpoint
from faceswap_pl.inference.generators import read_training_checkpoint
from faceswap_pl.training.module import FaceSwapModule

TINY = dict(backbone="unet", num_aad_blocks=1, image_size=64, width=0.125, d_ndf=8, d_layers=3, d_scales=2)
METRICS = {"id_top1", "id_top5", "id_cos", "expression", "eye", "pose_deg", "shape", "select", "gallery_identities",
           "gallery_images", "id_top1_chance", "id_top5_chance"}


@pytest.fixture(scope="module")
def trained(demo_shards, tmp_path_factory):
    """A 4-iteration run with evaluation every 2 iterations, MLflow in SQLite, checkpoints on eval/select."""
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.loggers import MLFlowLogger

    root = tmp_path_factory.mktemp("run")
    uri = f"sqlite:///{root}/mlruns.db"
    callback = EvaluationCallback(every_n_iterations=2, grid_pairs=3, batch_size=4)
    checkpoint = ModelCheckpoint(dirpath=root / "ckpt", monitor="eval/select", mode="max", save_top_k=1,
                                 save_last=True, filename="best-{step}")
    dm = FaceSwapDataModule(train=str(demo_shards / "train"), val=str(demo_shards / "val"), image_size=64,
                            batch_size=4, num_workers=0, epoch_pairs=8, val_pairs=4, eval_pairs=6)
    module = FaceSwapModule(**TINY, max_iterations=4)
    logger = MLFlowLogger(experiment_name="evaltest", tracking_uri=uri, artifact_location=str(root / "artifacts"))
    trainer = L.Trainer(accelerator="cpu", devices=1, max_epochs=100, logger=logger, callbacks=[callback, checkpoint],
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                        check_val_every_n_epoch=2, default_root_dir=root)
    trainer.fit(module, datamodule=dm)
    return {"root": root, "uri": uri, "callback": callback, "checkpoint": checkpoint, "run_id": logger.run_id,
            "module": module}


def test_training_logs_every_metric_at_start_every_n_and_at_validation(trained):
    import mlflow

    history = trained["callback"].history
    # iteration 0 (before training), 2 (every 2), 4 (every 2 and the validation after epoch 2)
    assert [int(h["iteration"]) for h in history] == [0, 2, 4, 4]
    assert all(METRICS <= set(h) for h in history)
    last = history[-1]
    assert 0.0 <= last["id_top1"] <= last["id_top5"] <= 1.0 and -1.0 <= last["id_cos"] <= 1.0
    assert last["select"] == last["id_top1"]  # no expression bound
    client = mlflow.MlflowClient(tracking_uri=trained["uri"])
    steps = sorted(m.step for m in client.get_metric_history(trained["run_id"], "eval/id_cos"))
    assert steps[:3] == [0, 2, 4]
    assert {"eval/expression", "eval/pose_deg", "eval/shape", "eval/eye"} <= set(client.get_run(trained["run_id"]).data.metrics)


def test_sample_grid_is_an_mlflow_image_with_a_step(trained):
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=trained["uri"])
    local = Path(client.download_artifacts(trained["run_id"], "images", str(trained["root"] / "dl")))
    grids = sorted(local.glob("eval_grid*.png"))
    assert grids, f"no grid image in {sorted(p.name for p in local.iterdir())}"
    image = cv2.imread(str(grids[0]))
    # three 64-px columns (source | target | swap), three rows, a header strip
    assert image.shape[1] == 3 * 64 + 4 * 2 and image.shape[0] == 16 + 3 * 64 + 4 * 2


def test_checkpoint_selection_on_eval_select_and_last(trained):
    checkpoint = trained["checkpoint"]
    assert Path(checkpoint.best_model_path).name.startswith("best-") and Path(checkpoint.last_model_path).is_file()
    assert float(checkpoint.best_model_score) == pytest.approx(trained["callback"].history[-1]["select"])


def test_expression_bound_pushes_the_selection_score_below_every_bounded_run():
    callback = EvaluationCallback(expression_bound=0.05)
    assert callback.selection_score({"id_top1": 0.5, "expression": 0.04}) == 0.5
    assert callback.selection_score({"id_top1": 1.0, "expression": 0.06}) == 0.0
    with pytest.raises(FaceSwapError, match="every_n_iterations=0 must be at least 1"):
        EvaluationCallback(every_n_iterations=0)


def test_callback_refuses_the_training_encoder_and_says_when_it_cannot_evaluate(tmp_path):
    from faceswap_pl.data.synthetic import SyntheticPairDataModule
    from faceswap_pl.data.tensor_batches import TensorBatchDataModule

    module = FaceSwapModule(**TINY)

    class Holder:
        datamodule = SyntheticPairDataModule()

    with pytest.raises(FaceSwapError, match="'sface' is also the training identity encoder"):
        EvaluationCallback(recognizer="sface").setup(Holder(), module, "fit")
    Holder.datamodule = TensorBatchDataModule(str(tmp_path / "batches.pt"))  # a replayed batch file has no pairs
    callback = EvaluationCallback()
    with pytest.warns(UserWarning, match="has no eval_pairs.*no eval/\\* metrics are logged"):
        callback.setup(Holder(), module, "fit")
    assert callback.evaluate(Holder(), module) == {} and callback.history == []


def test_evaluate_writes_reports_and_worst_grids(trained, demo_shards, tmp_path, capsys):
    last = trained["checkpoint"].last_model_path
    out = tmp_path / "report"
    assert main(["evaluate", "--checkpoint", last, "--pairs", str(demo_shards / "val"), "--out", str(out),
                 "--num-pairs", "6", "--worst", "2", "--pairs-file", str(tmp_path / "pairs.json")]) == 0
    report = json.loads((out / "report.json").read_text())
    assert set(report["metrics"]) == METRICS - {"select"} and report["num_pairs"] == 6
    # retrieval among every identity of the split (the 6 held-out people), not only the 6 pairs' sources
    assert report["metrics"]["gallery_identities"] == 6 and report["metrics"]["id_top1_chance"] == pytest.approx(1 / 6)
    assert "ID retrieval searches all 6 identities of the split" in (out / "report.md").read_text()
    assert len(report["pairs_detail"]) == 6 and all(len(v) == 2 for v in report["worst"].values())
    worst_cos = report["worst"]["id_cos"]
    cos = [p["id_cos"] for p in report["pairs_detail"]]
    assert cos[worst_cos[0]] == min(cos)  # the worst pair by identity cosine comes first
    assert cv2.imread(str(out / "worst_id_cos.png")).shape[0] == 16 + 2 * 64 + 3 * 2
    assert "| id_top1 |" in (out / "report.md").read_text()
    assert "id_cos" in capsys.readouterr().out
    # the pinned pairs file gives the same pairs and numbers again
    again = evaluate_checkpoint(last, str(demo_shards / "val"), tmp_path / "again", num_pairs=6,
                                pairs_file=tmp_path / "pairs.json")
    assert again["metrics"] == pytest.approx(report["metrics"], abs=1e-5)


def test_evaluate_user_errors_name_the_file_and_the_fix(trained, demo_shards, tmp_path, capsys):
    assert main(["evaluate", "--checkpoint", str(tmp_path / "nope.ckpt"), "--pairs", str(demo_shards / "val")]) == 2
    assert "nope.ckpt does not exist" in capsys.readouterr().err
    plain = tmp_path / "plain.ckpt"
    torch.save({"weight": torch.zeros(2)}, plain)
    with pytest.raises(FaceSwapError, match="is not a faceswap-pl training checkpoint"):
        read_training_checkpoint(plain)
    with pytest.raises(FaceSwapError, match="trained against 'sface'"):
        evaluate_checkpoint(trained["checkpoint"].last_model_path, str(demo_shards / "val"), tmp_path / "x",
                            recognizer="sface")


def test_cli_written_checkpoints_with_private_hyperparameters_load(trained, tmp_path):
    # LightningCLI stores `_instantiator` (and may add other private entries) next to the module options
    raw = torch.load(trained["checkpoint"].last_model_path, map_location="cpu", weights_only=True)
    raw["hyper_parameters"]["_instantiator"] = "lightning.pytorch.cli.instantiate_module"
    path = tmp_path / "cli.ckpt"
    torch.save(raw, path)
    loaded, original = read_training_checkpoint(path).generator.state_dict(), trained["module"].generator.state_dict()
    assert loaded.keys() == original.keys() and all(torch.equal(loaded[k], original[k]) for k in loaded)
    # the generator is rebuilt from the options it needs: an option of another version does not stop inference
    raw["hyper_parameters"]["no_such_option"] = 1
    torch.save(raw, path)
    assert read_training_checkpoint(path).generator.state_dict().keys() == original.keys()
