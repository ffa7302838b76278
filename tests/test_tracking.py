"""`faceswap_pl.runs` and `faceswap-pl runs`: tracking URIs, run comparison, metric curves, errors."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from faceswap_pl.cli import main
from faceswap_pl.errors import FaceSwapError
from faceswap_pl.runs import DEFAULT_TRACKING_URI
from faceswap_pl.runs.compare import compare_runs, default_ascending, group_runs
from faceswap_pl.runs.plots import plot_metric_curves
from faceswap_pl.runs.store import (
    PARAM_VALUE_LIMIT,
    flatten_params,
    list_experiments,
    mlflow_ui_command,
    resolve_tracking_uri,
)

ROOT = Path(__file__).resolve().parents[1]
TINY = str(ROOT / "experiments" / "tiny_cpu.yaml")
T0 = 1_700_000_000_000  # ms


def _log_run(client, experiment_id, name, params, histories, start_s, status="FINISHED"):
    run = client.create_run(experiment_id, start_time=T0 + start_s * 1000, run_name=name)
    run_id = run.info.run_id
    for key, value in params.items():
        client.log_param(run_id, key, value)
    for key, points in histories.items():
        for step, value in points:
            client.log_metric(run_id, key, value, timestamp=T0 + step, step=step)
    client.set_terminated(run_id, status, end_time=T0 + start_s * 1000 + 75_000)
    return run_id


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A sqlite store: experiments older (1 run), prefixed (2 runs), tiny (3 runs, newest with runs), empty."""
    from mlflow import MlflowClient

    folder = tmp_path_factory.mktemp("store")
    uri = f"sqlite:///{folder / 'runs.db'}"
    client = MlflowClient(tracking_uri=uri)
    ids = {}

    def experiment(name):
        experiment_id = client.create_experiment(name, artifact_location=(folder / "art" / name).as_uri())
        time.sleep(0.01)  # distinct creation times
        return experiment_id

    older = experiment("older")
    _log_run(client, older, "old-1", {"backbone": "unet"}, {"val/id_cos": [(0, 0.95)]}, 0)
    prefixed = experiment("prefixed")
    for i, (w_id, batch) in enumerate([("20.0", "4"), ("10.0", "8")]):
        _log_run(client, prefixed, f"pre-{i}", {"model.w_id": w_id, "model.backbone": "unet", "data.batch_size": batch},
                 {"val/id_cos": [(0, 0.1 * (i + 1))]}, i)
    tiny = experiment("tiny")
    common = {"lr_g": "0.0004", "_instantiator": "lightning.pytorch.cli.instantiate_module"}
    ids["run-a"] = _log_run(client, tiny, "run-a", {**common, "backbone": "unet", "w_id": "20.0"}, {
        "val/id_cos": [(0, 0.2), (10, 0.5)], "train/loss_g": [(0, 5.0), (5, 3.0), (10, 2.0)],
        "eval/id_top1": [(10, 0.7)], "epoch": [(10, 0.0)]}, 10)
    ids["run-b"] = _log_run(client, tiny, "run-b", {**common, "backbone": "unet", "w_id": "10.0"}, {
        "val/id_cos": [(0, 0.3), (10, 0.6)], "train/loss_g": [(0, 4.0), (10, 1.5)],
        "eval/id_top1": [(10, 0.9)], "epoch": [(10, 0.0)]}, 20)
    ids["run-c"] = _log_run(client, tiny, "run-c", {**common, "backbone": "linknet", "w_id": "20.0"}, {
        "val/id_cos": [(0, 0.3)], "train/loss_g": [(0, 6.0), (10, 4.0)], "epoch": [(10, 0.0)]}, 30,
        status="FAILED")
    experiment("empty")
    return {"uri": uri, "ids": ids, "folder": folder}


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a default ./mlruns.db or ./runs_compare.png must not land in the repo
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def _names(result):
    return [row[0] for row in result.rows]


def _column(result, name):
    index = result.columns.index(name)
    return [row[index] for row in result.rows]


# ---------------------------------------------------------------- compare_runs

def test_default_experiment_is_the_newest_with_runs_and_the_title_says_so(store):
    result = compare_runs(store["uri"])
    assert result.experiment == "tiny"
    assert "newest of 3 experiments with runs" in result.title and "older" in result.title
    assert compare_runs(store["uri"], experiment="older").title.count("newest") == 0


def test_default_metrics_eval_first_and_counters_left_out(store):
    columns, rows = compare_runs(store["uri"])
    assert columns == ["run", "id", "eval/id_top1", "val/id_cos", "train/loss_g", "backbone", "w_id",
                       "status", "started", "duration"]
    assert len(rows) == 3


def test_default_sort_is_first_metric_descending_for_similarities_missing_last(store):
    result = compare_runs(store["uri"])
    assert (result.sort, result.ascending) == ("eval/id_top1", False)
    assert _names(result) == ["run-b", "run-a", "run-c"]
    assert _column(result, "eval/id_top1") == [0.9, 0.7, None]
    assert "by eval/id_top1 (descending)" in result.title


def test_losses_sort_ascending_by_default_and_direction_can_be_flipped(store):
    result = compare_runs(store["uri"], sort="train/loss_g")
    assert result.ascending is True and _names(result) == ["run-b", "run-a", "run-c"]
    assert _column(result, "train/loss_g") == [1.5, 2.0, 4.0]  # the last logged value
    assert _names(compare_runs(store["uri"], sort="train/loss_g", ascending=False)) == ["run-c", "run-a", "run-b"]
    assert _names(compare_runs(store["uri"], sort="val/id_cos")) == ["run-b", "run-a", "run-c"]
    assert _names(compare_runs(store["uri"], sort="val/id_cos", ascending=True)) == ["run-c", "run-a", "run-b"]


def test_default_direction_by_name():
    assert not default_ascending("val/id_cos") and not default_ascending("eval/top5") \
        and not default_ascending("eval/id_retrieval") and not default_ascending("eval/select")
    assert default_ascending("train/loss_g") and default_ascending("val/rec") and default_ascending("train/id")
    assert default_ascending("train/id_loss") and default_ascending("eval/cos_distance")  # named as losses


def test_selection_score_is_the_default_sort(tmp_path):
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'sel.db'}"
    client = MlflowClient(tracking_uri=uri)
    experiment = client.create_experiment("sel")
    for name, select, expression in (("low", 0.2, 0.1), ("high", 0.8, 0.3)):
        _log_run(client, experiment, name, {}, {"eval/select": [(0, select)], "eval/id_top1": [(0, select)],
                                                "eval/expression": [(0, expression)]}, 0)
    result = compare_runs(uri)
    assert result.metrics == ["eval/select", "eval/id_top1", "eval/expression"]
    assert (result.sort, result.ascending, _names(result)) == ("eval/select", False, ["high", "low"])
    assert _names(compare_runs(uri, sort="eval/expression")) == ["low", "high"]


def test_sort_metric_outside_the_chosen_ones_is_added(store):
    result = compare_runs(store["uri"], metrics=["train/loss_g"], sort="val/id_cos")
    assert result.metrics == ["train/loss_g", "val/id_cos"]
    assert _names(result) == ["run-b", "run-a", "run-c"]


def test_default_params_are_those_that_differ(store):
    result = compare_runs(store["uri"])
    assert result.params == ["backbone", "w_id"]  # not lr_g (same everywhere), not _instantiator
    assert _column(result, "backbone") == ["unet", "unet", "linknet"]
    assert _column(result, "w_id") == ["10.0", "20.0", "20.0"]
    # among the runs shown: the best two differ only in w_id
    assert compare_runs(store["uri"], limit=2).params == ["w_id"]


def test_model_prefixed_params_are_preferred(store):
    result = compare_runs(store["uri"], experiment="prefixed")
    assert result.params == ["model.w_id"]  # data.batch_size differs too but is not a model param


def test_explicit_params_and_info_columns(store):
    result = compare_runs(store["uri"], params=["lr_g", "backbone"], sort="val/id_cos")
    assert result.params == ["lr_g", "backbone"]
    assert _column(result, "lr_g") == ["0.0004"] * 3
    assert _column(result, "status") == ["finished", "finished", "failed"]
    assert _column(result, "duration") == ["1m 15s"] * 3
    assert _column(result, "id") == [store["ids"][n] for n in ("run-b", "run-a", "run-c")]


def test_limit_keeps_the_best(store):
    result = compare_runs(store["uri"], sort="train/loss_g", limit=2)
    assert _names(result) == ["run-b", "run-a"] and "2 of 3 runs" in result.title


def test_experiment_by_id(store):
    experiments = {name: experiment_id for name, experiment_id, _ in list_experiments(store["uri"])}
    assert compare_runs(store["uri"], experiment=experiments["older"]).experiment == "older"


# ---------------------------------------------------------------- errors

def _error(call, *args, **kwargs) -> str:
    with pytest.raises(FaceSwapError) as caught:
        call(*args, **kwargs)
    return str(caught.value)


def test_unknown_experiment_lists_the_available(store):
    message = _error(compare_runs, store["uri"], experiment="tinny")
    assert "'tinny'" in message and "available: Default, empty, older, prefixed, tiny" in message


def test_experiment_without_runs(store):
    message = _error(compare_runs, store["uri"], experiment="empty")
    assert "'empty'" in message and "has no runs" in message


def test_unknown_metric_lists_the_available(store):
    message = _error(compare_runs, store["uri"], metrics=["val/idcos"])
    assert "'val/idcos' (--metric)" in message
    assert "available: eval/id_top1, val/id_cos, train/loss_g, epoch." in message
    assert "'nope' (--sort)" in _error(compare_runs, store["uri"], sort="nope")


def test_unknown_param_lists_the_available(store):
    message = _error(compare_runs, store["uri"], params=["w_idd"])
    assert "'w_idd' (--param)" in message and "backbone" in message and "w_id" in message


def test_missing_store_is_not_created(tmp_path):
    message = _error(compare_runs, None)
    assert f"{tmp_path / 'mlruns.db'} does not exist" in message and "--tracking-uri" in message
    assert not (tmp_path / "mlruns.db").exists()
    assert "does not exist" in _error(compare_runs, str(tmp_path / "no_such_dir"))


def test_file_store_is_read(tmp_path, monkeypatch):
    from mlflow import MlflowClient

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    client = MlflowClient(tracking_uri=(tmp_path / "store").as_uri())
    run = client.create_run(client.create_experiment("fx"), run_name="r1")
    client.log_metric(run.info.run_id, "val/id_cos", 0.25)
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE")
    result = compare_runs("store")  # a plain folder path
    assert result.rows[0][:3] == ["r1", run.info.run_id, 0.25]
    assert "MLFLOW_ALLOW_FILE_STORE" not in os.environ


def test_store_without_runs(tmp_path):
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'blank.db'}"
    MlflowClient(tracking_uri=uri).search_experiments()  # creates the tables and the Default experiment
    message = _error(compare_runs, uri)
    assert message.startswith(f"No runs in sqlite:///{tmp_path / 'blank.db'}") and "faceswap-pl fit" in message


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unreachable_server_fails_fast_with_the_address(monkeypatch):
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_TIMEOUT", raising=False)
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", raising=False)
    port = _free_port()
    start = time.monotonic()
    message = _error(compare_runs, f"http://127.0.0.1:{port}/")
    assert time.monotonic() - start < 15
    assert f"MLflow server http://127.0.0.1:{port} is not reachable" in message
    assert f"`mlflow server --host 127.0.0.1 --port {port}`" in message
    assert "MLFLOW_HTTP_REQUEST_TIMEOUT" not in os.environ  # set only for the call
    assert "MLFLOW_HTTP_REQUEST_MAX_RETRIES" not in os.environ


def test_bad_limit(store):
    assert "--limit 0" in _error(compare_runs, store["uri"], limit=0)


# ---------------------------------------------------------------- plot

def test_plot_writes_a_readable_png(store, tmp_path):
    import matplotlib.image

    ids = [store["ids"][n] for n in ("run-a", "run-b", "run-c")]
    out = plot_metric_curves(store["uri"], ids, ["val/id_cos", "train/loss_g", "eval/id_top1", "epoch"],
                             tmp_path / "plots" / "curves.png")
    assert out == tmp_path / "plots" / "curves.png"
    image = matplotlib.image.imread(out)
    assert image.ndim == 3 and image.shape[0] > 300 and image.shape[1] > 1000  # 2 rows x 3 columns
    assert image[..., :3].std() > 0.05  # not blank


def test_plot_errors(store, tmp_path):
    ids = [store["ids"]["run-a"]]
    message = _error(plot_metric_curves, store["uri"], ids, ["val/nope"], tmp_path / "x.png")
    assert "'val/nope'" in message and "available: eval/id_top1, val/id_cos" in message
    assert "'0123abc' is not in" in _error(plot_metric_curves, store["uri"], ["0123abc"], ["val/id_cos"],
                                            tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


# ---------------------------------------------------------------- URIs and params

@pytest.mark.parametrize("given, expected", [
    (None, "sqlite:///{cwd}/mlruns.db"),
    ("", "sqlite:///{cwd}/mlruns.db"),
    ("sqlite:///sub/runs.db", "sqlite:///{cwd}/sub/runs.db"),
    ("sqlite:////abs/runs.db", "sqlite:////abs/runs.db"),
    ("http://127.0.0.1:5000/", "http://127.0.0.1:5000"),
    ("https://mlflow.example.com", "https://mlflow.example.com"),
    ("file:///abs/mlruns", "file:///abs/mlruns"),
    ("file:rel/mlruns", "file://{cwd}/rel/mlruns"),
    ("mlruns", "file://{cwd}/mlruns"),
    ("./a/../mlruns", "file://{cwd}/mlruns"),
])
def test_resolve_tracking_uri(given, expected, tmp_path):
    cwd = Path.cwd().resolve()
    assert resolve_tracking_uri(given) == expected.format(cwd=cwd)


def test_resolve_tracking_uri_reads_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///env.db")
    assert resolve_tracking_uri(None) == f"sqlite:///{Path.cwd().resolve()}/env.db"
    assert resolve_tracking_uri("http://h:1") == "http://h:1"  # an explicit URI wins
    assert DEFAULT_TRACKING_URI == "sqlite:///mlruns.db"


@pytest.mark.parametrize("uri, expected", [
    ("postgresql://user@host/db", "'postgresql://user@host/db' is not supported; use sqlite:///PATH.db"),
    ("databricks", None),  # a plain path: a file store folder of that name
    ("sqlite://", "names no database file"),
    ("sqlite:///:memory:", "names no database file"),
    ("http://", "has no host"),
])
def test_resolve_tracking_uri_rejects(uri, expected):
    if expected is None:
        assert resolve_tracking_uri(uri).startswith("file://")
        return
    assert expected in _error(resolve_tracking_uri, uri)


def test_mlflow_ui_command(tmp_path):
    assert mlflow_ui_command("sqlite:///mlruns.db") == (
        f"mlflow ui --backend-store-uri sqlite:///{tmp_path.resolve()}/mlruns.db --host 127.0.0.1 --port 5000")
    assert mlflow_ui_command("sqlite:///my runs.db").startswith(  # quoted for the shell
        f"mlflow ui --backend-store-uri 'sqlite:///{tmp_path.resolve()}/my runs.db' ")
    assert mlflow_ui_command("runs").startswith(
        f"MLFLOW_ALLOW_FILE_STORE=true mlflow ui --backend-store-uri file://{tmp_path.resolve()}/runs ")
    assert mlflow_ui_command("http://127.0.0.1:5000/") == (
        "open http://127.0.0.1:5000 in a browser (the MLflow server's UI)")


def test_flatten_params():
    config = {"model": {"backbone": "unet", "w_id": 20.0, "betas": [0.0, 0.999], "weights": None,
                        "opt": {"lr": 4e-4}},
              "trainer": {"callbacks": [{"class_path": "X", "init_args": {"a": 1}}], "plugins": {}},
              "seed_everything": 0, "long": "x" * 7000}
    flat = flatten_params(config)
    assert flat["model.backbone"] == "unet" and flat["model.w_id"] == "20.0" and flat["model.weights"] == "None"
    assert flat["model.betas"] == "[0.0, 0.999]" and flat["model.opt.lr"] == "0.0004"
    assert flat["trainer.callbacks"] == '[{"class_path": "X", "init_args": {"a": 1}}]'
    assert flat["trainer.plugins"] == "{}" and flat["seed_everything"] == "0"
    assert len(flat["long"]) == PARAM_VALUE_LIMIT and flat["long"].endswith("...")
    assert all(isinstance(v, str) for v in flat.values())
    assert flatten_params({"w": 1}, prefix="model") == {"model.w": "1"}


# ---------------------------------------------------------------- CLI

def test_cli_compare_prints_the_table_and_the_plot(store, tmp_path, capsys):
    assert main(["runs", "compare", "--tracking-uri", store["uri"], "--sort", "train/loss_g"]) == 0
    out = capsys.readouterr().out
    assert out.index("run-b") < out.index("run-a") < out.index("run-c")
    assert "Experiment 'tiny': 3 runs by train/loss_g (ascending)" in out and "linknet" in out
    assert f"metric curves: {tmp_path / 'runs_compare.png'}" in out
    assert (tmp_path / "runs_compare.png").stat().st_size > 10_000
    assert f"mlflow ui --backend-store-uri {store['uri']}" in out


def test_cli_compare_options(store, tmp_path, capsys):
    assert main(["runs", "compare", "--tracking-uri", store["uri"], "--experiment", "tiny", "--metric", "val/id_cos",
                 "--param", "lr_g", "--ascending", "--limit", "1", "--no-plot"]) == 0
    out = capsys.readouterr().out
    assert "run-c" in out and "run-a" not in out and "0.0004" in out and "1 of 3 runs" in out
    assert not (tmp_path / "runs_compare.png").exists()


def test_cli_errors_print_one_line_and_exit_2(store, capsys):
    assert main(["runs", "compare", "--tracking-uri", store["uri"], "--metric", "nope"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: Metric 'nope' (--metric) was not logged") and "\n" not in err
    with pytest.raises(SystemExit) as done:
        main(["runs", "compare", "--ascending", "--descending"])
    assert done.value.code == 2
    with pytest.raises(SystemExit) as done:
        main(["runs", "compare", "--limit", "0"])
    assert done.value.code == 2 and "--limit: 0 shows no runs" in capsys.readouterr().err


def test_cli_list_experiments(store, capsys):
    assert main(["runs", "list-experiments", "--tracking-uri", store["uri"]]) == 0
    out = capsys.readouterr().out
    lines = {line.split("│")[1].strip(): line for line in out.splitlines() if line.count("│") == 4}
    assert set(lines) == {"Default", "older", "prefixed", "tiny", "empty"}
    assert lines["tiny"].split("│")[3].strip() == "3" and lines["empty"].split("│")[3].strip() == "0"


def test_cli_help_does_not_import_mlflow():
    code = ("import sys; from faceswap_pl.cli import build_parser; build_parser(); "
            "assert 'mlflow' not in sys.modules and 'matplotlib' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------- a real server (slow)

@pytest.fixture
def mlflow_server(tmp_path):
    """A local `mlflow server` (sqlite backend, proxied artifacts); yields its URI, stopped afterwards."""
    port = _free_port()
    uri = f"http://127.0.0.1:{port}"
    log = open(tmp_path / "server.log", "w")
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri",
         f"sqlite:///{tmp_path / 'srv.db'}", "--artifacts-destination", str(tmp_path / "art"),
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        import urllib.request

        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                log.flush()
                pytest.fail(f"mlflow server did not answer {uri}/health within 90 s (exit code {server.poll()}); "
                            f"its log:\n{(tmp_path / 'server.log').read_text()[-3000:]}")
            time.sleep(0.5)
        yield uri
    finally:
        import signal

        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)  # the server's own process group: uvicorn and its workers
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()
        log.close()


@pytest.mark.slow
@pytest.mark.ci
def test_compare_two_trainings_on_a_server(mlflow_server, tmp_path, capsys):
    from mlflow import MlflowClient

    for w_id in ("5.0", "40.0"):
        assert main(["fit", "--config", TINY, "--model.max_iterations=3", f"--model.w_id={w_id}",
                     "--trainer.enable_progress_bar=false", "--trainer.limit_val_batches=1",
                     f"--trainer.logger.init_args.tracking_uri={mlflow_server}"]) == 0
    capsys.readouterr()

    result = compare_runs(mlflow_server, sort="train/loss_g")
    assert result.experiment == "tiny_cpu" and len(result.rows) == 2
    assert "model.w_id" in result.params and sorted(_column(result, "model.w_id")) == ["40.0", "5.0"]
    losses = _column(result, "train/loss_g")
    assert losses == sorted(losses)  # ascending: lowest generator loss first

    assert main(["runs", "compare", "--tracking-uri", mlflow_server, "--metric", "val/id_cos",
                 "--metric", "train/loss_g", "--plot", "curves.png"]) == 0
    out = capsys.readouterr().out
    assert "by val/id_cos (descending)" in out and "w_id" in out and "40.0" in out and "5.0" in out
    assert result.run_ids[0][:8] in out and result.run_ids[1][:8] in out
    assert (tmp_path / "curves.png").stat().st_size > 10_000
    assert f"open {mlflow_server} in a browser" in out

    client = MlflowClient(tracking_uri=mlflow_server)
    for run_id in result.run_ids:  # the config artifact went through the server's artifact proxy
        assert [a.path for a in client.list_artifacts(run_id)] == ["config.yaml", "images"]  # + the eval grids
    assert list((tmp_path / "art").rglob("config.yaml"))
    assert len(list((tmp_path / "outputs").rglob("*.ckpt"))) == 2  # checkpoints landed in tmp_path, not the repo


# ---------------------------------------------------------------- runs grouped by a param (seeds of a configuration)

def test_runs_grouped_by_a_param_give_means_intervals_and_welch(tmp_path, capsys):
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'g.db'}"
    client = MlflowClient(tracking_uri=uri)
    experiment = client.create_experiment("ablation", artifact_location=(tmp_path / "art").as_uri())
    values = {"unet": [0.50, 0.52, 0.54], "linknet": [0.80, 0.81, 0.82], "resnet": [0.60, 0.90, 0.75]}
    for backbone, scores in values.items():
        for seed, score in enumerate(scores):
            _log_run(client, experiment, f"{backbone}-{seed}", {"model.backbone": backbone, "seed": str(seed)},
                     {"eval/id_top1": [(40, score)]}, seed)
    # a sweep's per-configuration run carries mean/* figures, not eval/*: it does not count as a run of a group
    _log_run(client, experiment, "config", {"model.backbone": "unet"}, {"mean/eval/id_top1": [(0, 0.52)]}, 9)
    result = group_runs(uri, experiment="ablation", group_by=["model.backbone"], metrics=["eval/id_top1"])
    assert [g["key"]["model.backbone"] for g in result.groups] == ["linknet", "resnet", "unet"]
    assert [g["runs"] for g in result.groups] == [3, 3, 3]
    unet = result.groups[2]["summary"]["eval/id_top1"]
    assert unet["mean"] == pytest.approx(0.52) and unet["ci95"] == pytest.approx(4.303 * 0.02 / 3 ** 0.5, rel=1e-3)
    assert result.groups[0]["p"]["eval/id_top1"] is None                 # the best group
    assert result.groups[2]["p"]["eval/id_top1"] < 0.05                  # unet: clearly worse
    assert result.groups[1]["p"]["eval/id_top1"] > 0.05                  # resnet: within its seed noise
    assert main(["runs", "compare", "--tracking-uri", uri, "--experiment", "ablation", "--group-by",
                 "model.backbone", "--metric", "eval/id_top1", "--plot", str(tmp_path / "c.png")]) == 0
    out = capsys.readouterr().out
    assert "0.520 ± 0.050" in out and "n.s. (p=" in out and "differs (p=" in out
    assert (tmp_path / "c_groups.png").stat().st_size > 1000
    assert main(["runs", "compare", "--tracking-uri", uri, "--experiment", "ablation", "--group-by", "nope"]) == 2
