"""`faceswap-pl export`: safetensors/JSON and ONNX round trips, dynamic batch, model card, MLflow run lookup and registry."""

from __future__ import annotations

import hashlib
import json
import shutil

import lightning as L
import pytest
import torch

from faceswap_pl.cli import main
from faceswap_pl.errors import CheckpointMismatchError, CheckpointNotFoundError, FaceSwapError
from faceswap_pl.export import OnnxVerificationError, export_generator, register_export
from faceswap_pl.inference.export_format import CARD_FILE, CONFIG_FILE, ONNX_FILE, WEIGHTS_FILE
from faceswap_pl.inference.exported import OnnxGenerator, load_exported_generator
from faceswap_pl.runs.store import find_run_checkpoint
from faceswap_pl.training.module import FaceSwapModule


def _sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


TINY = dict(backbone="unet", num_aad_blocks=1, image_size=64, width=0.125, d_ndf=8, d_layers=3, d_scales=2)
ONNX_ATOL = 1e-4  # measured: about 1e-6 on this model (see the export's max_abs_diff)


def _inputs(n: int, seed: int = 1, id_dim: int = 128):
    g = torch.Generator().manual_seed(seed)
    target = torch.rand(n, 3, 64, 64, generator=g) * 2 - 1
    return target, torch.nn.functional.normalize(torch.randn(n, id_dim, generator=g), dim=-1)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, randomize_batchnorm):
    """A checkpoint in `fit`'s format (EMA on, random BatchNorm statistics, EMA != generator) at
    run/checkpoints/last.ckpt, with run/evaluation/report.json, exported to run/export.

    Written with torch.save in Lightning's layout (hyper_parameters + state_dict): a real 1-iteration fit takes
    about 30 s on a loaded 2-core CPU.
    """
    root = tmp_path_factory.mktemp("run")
    torch.manual_seed(0)
    module = FaceSwapModule(**TINY, ema_decay=0.5)
    randomize_batchnorm(module.generator, seed=1)
    randomize_batchnorm(module.generator_ema, seed=2)
    with torch.no_grad():
        for p in module.generator_ema.parameters():
            p.add_(0.01 * torch.randn_like(p))
        module.iteration.fill_(3)
    checkpoint = root / "checkpoints" / "last.ckpt"
    checkpoint.parent.mkdir()
    torch.save({"hyper_parameters": dict(module.hparams), "state_dict": module.state_dict(),
                "pytorch-lightning_version": L.__version__, "global_step": 6}, checkpoint)
    (root / "evaluation").mkdir()
    (root / "evaluation" / "report.json").write_text(json.dumps({"metrics": {"id_cos": 0.25, "expression": 1.5}}))
    out = root / "export"
    info = export_generator(checkpoint, out)
    return {"checkpoint": checkpoint, "out": out, "info": info, "module": module.eval()}


def test_safetensors_and_onnx_reproduce_the_checkpoint(trained):
    module = trained["module"]
    assert module.generator_ema is not None
    net = load_exported_generator(trained["out"])
    onnx_net = OnnxGenerator(trained["out"])
    target, embedding = _inputs(2)
    with torch.no_grad():
        expected = module(target, embedding)
        got = net(target, embedding)[0]
        plain = module.generator(target, embedding)[0]
    assert torch.equal(got, expected)
    assert not torch.equal(plain, expected)  # the EMA copy was exported, not the raw generator
    assert torch.allclose(onnx_net(target, embedding), expected, atol=ONNX_ATOL, rtol=0)
    assert set(load_exported_generator(trained["out"] / WEIGHTS_FILE).state_dict()) == set(module.generator.state_dict())
    config = json.loads((trained["out"] / CONFIG_FILE).read_text())
    assert {k: config[k] for k in ("backbone", "num_aad_blocks", "image_size", "width", "id_dim")} == {
        "backbone": "unet", "num_aad_blocks": 1, "image_size": 64, "width": 0.125, "id_dim": 128}
    assert config["identity_encoder"] == "sface" and config["ema"] is True
    assert "L2-normalised" in config["inputs"]["source_embedding"] and "[-1, 1]" in config["inputs"]["target"]


def test_onnx_batch_axis_is_dynamic(trained):
    import onnx

    diffs = trained["info"]["onnx"]["max_abs_diff"]
    assert set(diffs) == {2, 3} and max(diffs.values()) <= ONNX_ATOL
    graph = onnx.load(str(trained["out"] / ONNX_FILE)).graph
    assert [i.name for i in graph.input] == ["target", "source_embedding"] and graph.output[0].name == "swap"
    assert graph.input[0].type.tensor_type.shape.dim[0].dim_param  # symbolic, not a fixed size
    assert sorted(p.name for p in trained["out"].iterdir()) == sorted([WEIGHTS_FILE, CONFIG_FILE, ONNX_FILE, CARD_FILE])
    net, onnx_net = load_exported_generator(trained["out"]), OnnxGenerator(trained["out"])
    for n in (1, 5):
        target, embedding = _inputs(n, seed=n)
        with torch.no_grad():
            expected = net(target, embedding)[0]
        got = onnx_net(target, embedding)
        assert got.shape == (n, 3, 64, 64)
        assert torch.allclose(got, expected, atol=ONNX_ATOL, rtol=0)


def test_model_card_lists_config_metrics_source_and_hashes(trained):
    card = (trained["out"] / CARD_FILE).read_text()
    assert str(trained["checkpoint"].resolve()) in card
    for name in (WEIGHTS_FILE, CONFIG_FILE, ONNX_FILE):
        assert _sha256(trained["out"] / name) in card
    assert "| backbone | `unet` |" in card and "| id_dim | `128` |" in card and "`sface`" in card
    assert "| id_cos | 0.25 |" in card and "report.json" in card
    assert "ONNX verification" in card


def test_register_creates_a_champion_version(trained, tmp_path, monkeypatch):
    from mlflow import MlflowClient

    monkeypatch.chdir(tmp_path)
    first = register_export(trained["out"], "ghost-tiny", tracking_uri="sqlite:///mlruns.db")
    second = register_export(trained["out"], "ghost-tiny", tracking_uri="sqlite:///mlruns.db")
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    assert (first["version"], second["version"]) == ("1", "2")
    champion = client.get_model_version_by_alias("ghost-tiny", "champion")
    assert str(champion.version) == "2" and champion.run_id == second["run_id"]
    assert champion.tags[f"sha256.{WEIGHTS_FILE}"] == _sha256(trained["out"] / WEIGHTS_FILE)
    assert champion.description == (trained["out"] / CARD_FILE).read_text()  # the card on the version's page
    logged = {a.path for a in client.list_artifacts(first["run_id"], "export")}
    assert {f"export/{WEIGHTS_FILE}", f"export/{ONNX_FILE}", f"export/{CARD_FILE}"} <= logged


def test_cli_export_of_a_run_finds_its_best_checkpoint_and_registers_on_it(trained, tmp_path, monkeypatch, capsys):
    from mlflow import MlflowClient

    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    client = MlflowClient(tracking_uri=uri)
    experiment_id = client.create_experiment("train")
    run_id = client.create_run(experiment_id).info.run_id
    client.log_metric(run_id, "eval/id_cos", 0.5)
    folder = tmp_path / "outputs" / experiment_id / run_id / "checkpoints"
    folder.mkdir(parents=True)
    shutil.copy(trained["checkpoint"], folder / "last.ckpt")
    shutil.copy(trained["checkpoint"], folder / "best-step=4.ckpt")
    assert find_run_checkpoint(run_id, uri).name == "best-step=4.ckpt"

    code = main(["export", "--run", run_id, "--tracking-uri", uri, "--out", "exported", "--no-onnx",
                 "--register", "ghost-run"])
    output = capsys.readouterr().out
    assert code == 0, output
    assert "best-step=4.ckpt" in output and "registered ghost-run version 1" in output
    assert not (tmp_path / "exported" / ONNX_FILE).exists()
    assert "| eval/id_cos | 0.5 |" in (tmp_path / "exported" / CARD_FILE).read_text()
    assert MlflowClient(tracking_uri=uri, registry_uri=uri).get_model_version_by_alias(
        "ghost-run", "champion").run_id == run_id

    assert main(["export", "--run", "0123456789abcdef", "--tracking-uri", uri, "--out", "x"]) == 2
    assert "MLflow run '0123456789abcdef' is not in" in capsys.readouterr().err
    empty = client.create_run(experiment_id).info.run_id
    assert main(["export", "--run", empty, "--tracking-uri", uri, "--out", "x"]) == 2
    assert "has no checkpoint" in capsys.readouterr().err


def test_missing_and_foreign_checkpoints_fail_clearly(tmp_path):
    with pytest.raises(CheckpointNotFoundError, match="does not exist"):
        export_generator(tmp_path / "missing.ckpt", tmp_path / "out")
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {"weight": torch.zeros(2)}}, foreign)
    with pytest.raises(FaceSwapError, match="not a faceswap-pl training checkpoint"):
        export_generator(foreign, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_tampered_or_incomplete_exports_fail_clearly(trained, tmp_path):
    from safetensors.torch import load_file, save_file

    copy = tmp_path / "copy"
    shutil.copytree(trained["out"], copy)
    state = load_file(str(copy / WEIGHTS_FILE))
    key = next(k for k, v in state.items() if v.ndim == 4)
    state[key] = state[key][:, :1].contiguous()
    save_file(state, str(copy / WEIGHTS_FILE))
    with pytest.raises(CheckpointMismatchError, match=rf"shape mismatches \({key}: checkpoint"):
        load_exported_generator(copy)
    (copy / CONFIG_FILE).unlink()
    with pytest.raises(FaceSwapError, match=f"{CONFIG_FILE} next to the weights"):
        load_exported_generator(copy)
    with pytest.raises(FaceSwapError, match="does not exist"):
        OnnxGenerator(tmp_path / "nowhere")


def test_onnx_outside_the_tolerance_is_removed(trained, tmp_path):
    from faceswap_pl.export.writer import _write_onnx

    net = load_exported_generator(trained["out"])
    with pytest.raises(OnnxVerificationError, match="more than the tolerance"):
        _write_onnx(net, tmp_path / ONNX_FILE, 64, 128, opset=17, tolerance=1e-30)
    assert not (tmp_path / ONNX_FILE).exists()
