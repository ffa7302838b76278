"""`faceswap-pl fit|validate|...`: LightningCLI with the experiment configs, overrides and rejections."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import yaml

from faceswap_pl.cli import main
from faceswap_pl.training.module import FaceSwapModule

ROOT = Path(__file__).resolve().parents[1]
TINY = str(ROOT / "experiments" / "tiny_cpu.yaml")


def test_override_reaches_the_resolved_config(capsys):
    with pytest.raises(SystemExit) as done:
        main(["fit", "--config", TINY, "--model.backbone=linknet", "--model.num_aad_blocks=3", "--print_config"])
    assert done.value.code == 0
    config = yaml.safe_load(capsys.readouterr().out)
    assert config["model"]["backbone"] == "linknet" and config["model"]["num_aad_blocks"] == 3
    assert config["model"]["image_size"] == 64  # the rest still comes from the file


def test_every_experiment_config_parses(capsys):
    for path in sorted((ROOT / "experiments").rglob("*.yaml")):
        if path.parent.name == "data":
            continue
        command = ["restoration", "fit"] if path.name.startswith("restoration") else ["fit"]  # RestorationModule
        args = [*command, "--config", str(path)]
        if "data" not in yaml.safe_load(path.read_text()):
            args += ["--config", str(ROOT / "experiments" / "data" / "synthetic.yaml")]
        with pytest.raises(SystemExit) as done:
            main(args + ["--print_config"])
        assert done.value.code == 0, path


@pytest.mark.parametrize("override, expected", [
    ("--model.backbone=vgg", "valid names: linknet, resnet, unet, timm:"),
    ("--model.num_aad_blocks=0", "num_aad_blocks 0 is not valid"),
    ("--model.image_size=100", "image_size"),
    ("--model.identity_encoder=arcface", "valid names:"),
    ("--model.no_such_option=1", "unrecognized arguments: --model.no_such_option=1"),
    ("--model.num_aad_blocks=two", 'Parser key "model.num_aad_blocks"'),
])
def test_wrong_values_are_rejected_with_the_choices(override, expected, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    try:
        status = main(["fit", "--config", TINY, override, "--trainer.logger=false"])
    except SystemExit as stop:  # argparse's own exit for arguments it does not know
        status = stop.code
    assert status == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert any(line.startswith("error: ") and expected in line for line in err[-3:]), err[-3:]


def test_fit_logs_to_mlflow_in_sqlite(tmp_path, monkeypatch):
    import mlflow

    monkeypatch.chdir(tmp_path)
    assert main(["fit", "--config", TINY, "--model.max_iterations=2", "--trainer.enable_progress_bar=false",
                 "--trainer.limit_val_batches=1"]) == 0
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlruns.db'}")
    run = client.search_runs([client.get_experiment_by_name("tiny_cpu").experiment_id])[0]
    assert run.data.params["backbone"] == "unet" and run.data.params["max_iterations"] == "2"
    # the resolved config as flattened params too
    assert run.data.params["model.max_iterations"] == "2" and run.data.params["trainer.default_root_dir"] == "outputs"
    assert run.data.params["data.init_args.batch_size"] == "4"
    assert {"train/loss_g", "train/id", "val/id_cos", "eval/id_top1", "eval/gallery_identities"} <= set(run.data.metrics)
    assert [a.path for a in client.list_artifacts(run.info.run_id)] == ["config.yaml", "images"]  # eval grids
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "train/loss_g")]
    assert max(steps) <= 1  # x-axis counts iterations (2), not optimizer steps (4)
    assert list((tmp_path / "outputs").rglob("*.ckpt"))


def test_config_file_with_an_unknown_key_names_it(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.yaml").write_text("model:\n  backbone: unet\n  colour: red\n")
    with pytest.raises(SystemExit) as stop:
        main(["fit", "--config", TINY, "--config", str(tmp_path / "bad.yaml"), "--trainer.logger=false"])
    assert stop.value.code == 2
    assert "does not accept option 'model.colour'" in capsys.readouterr().err
    assert not (tmp_path / "outputs").exists() and not (tmp_path / "mlruns.db").exists()


def test_the_image_size_is_given_once_on_the_model(tmp_path, monkeypatch, capsys):
    from faceswap_pl.cli.lightning import FaceSwapLightningCLI

    monkeypatch.chdir(tmp_path)
    # the data module takes model.image_size through LightningCLI's link
    cli = FaceSwapLightningCLI(FaceSwapModule, L.LightningDataModule, subclass_mode_data=True, run=False,
                               args=["--config", TINY, "--model.image_size=128", "--trainer.logger=false"],
                               auto_configure_optimizers=False)
    assert cli.datamodule.hparams.image_size == 128 and cli.model.hparams.image_size == 128
    # giving it to the data module too is refused with the fix, from the command line and from a config file
    assert main(["fit", "--config", TINY, "--data.init_args.image_size=32"]) == 2
    assert "data.init_args.image_size is set in the command line" in capsys.readouterr().err
    (tmp_path / "data.yaml").write_text("data:\n  init_args:\n    image_size: 32\n")
    assert main(["fit", "--config", TINY, "--config", str(tmp_path / "data.yaml")]) == 2
    assert f"is set in {tmp_path / 'data.yaml'}" in capsys.readouterr().err
