"""`faceswap-pl sweep`: spec validation, stale-trial recovery, the report, and a real CPU sweep."""

from __future__ import annotations

import copy
import time
from pathlib import Path

import pytest
import yaml

from faceswap_pl.errors import FaceSwapError
from faceswap_pl.sweep.spec import load_spec, validate_spec

REPO = Path(__file__).resolve().parents[1]
GOOD = {
    "name": "t",
    "base_config": ["experiments/tiny_cpu.yaml"],
    "space": {"model.backbone": {"type": "categorical", "choices": ["unet", "linknet"]},
              "model.w_id": {"type": "float", "low": 1.0, "high": 40.0, "log": True}},
    "objective": {"metric": "eval/id_cos", "direction": "maximize"},
    "n_trials": 3,
}


def _with(**changes):
    raw = copy.deepcopy(GOOD)
    for key, value in changes.items():
        if value is None:
            raw.pop(key, None)
        else:
            raw[key] = value
    return raw


def test_shipped_specs_validate():
    for name in ("tiny_cpu", "ablation", "loss_weights", "ablation_cpu"):
        spec = load_spec(REPO / "sweeps" / f"{name}.yaml")
        assert all(Path(c).is_file() for c in spec.base_config)
        assert all(metric.startswith("eval/") for metric in spec.metrics)
    tiny = load_spec(REPO / "sweeps" / "tiny_cpu.yaml")
    assert tiny.sampler == "grid" and tiny.grid() == {"model.backbone": ["unet", "linknet"],
                                                      "model.num_aad_blocks": [1, 2]}
    ablation = load_spec(REPO / "sweeps" / "ablation.yaml")
    assert [Path(c).name for c in ablation.base_config] == ["ghost.yaml", "shards.yaml"]
    assert "--model.max_iterations=20000" in ablation.fixed_args()
    assert ablation.repeats == 3 and ablation.seeds() == [0, 1, 2] and ablation.metric == "eval/id_top1"
    weights = load_spec(REPO / "sweeps" / "loss_weights.yaml")
    assert weights.multi_objective and weights.directions == ["maximize", "minimize", "minimize"]


def test_good_spec_defaults():
    spec = validate_spec(GOOD, "t.yaml", REPO)
    assert spec.experiment == "sweep-t" and spec.pruner == {"type": "none"} and spec.sampler == "tpe"
    assert spec.base_config == [str(REPO / "experiments" / "tiny_cpu.yaml")]


@pytest.mark.parametrize("raw, key", [
    (_with(nmae="x"), "`nmae`"),
    (_with(name=None), "`name`"),
    (_with(name="a b"), "`name`"),
    (_with(base_config=["nope.yaml"]), "`base_config[0]`"),
    (_with(space={}), "`space`"),
    (_with(space={"backbone": {"type": "categorical", "choices": ["unet"]}}), "`space.backbone`"),
    (_with(space={"model.backbone": {"type": "choice", "choices": ["unet"]}}), "`space.model.backbone.type`"),
    (_with(space={"model.backbone": {"type": "categorical", "choices": []}}), "`space.model.backbone.choices`"),
    (_with(space={"model.w_id": {"type": "float", "low": 0.0, "high": 1.0, "log": True}}), "`space.model.w_id.low`"),
    (_with(space={"model.w_id": {"type": "float", "low": 2.0, "high": 1.0}}), "`space.model.w_id.low`"),
    (_with(space={"model.w_id": {"type": "float", "high": 1.0}}), "`space.model.w_id.low`"),
    (_with(space={"model.n": {"type": "int", "low": 1.5, "high": 3}}), "`space.model.n.low`"),
    (_with(space={"model.w_id": {"type": "float", "low": 1.0, "high": 2.0, "lg": True}}), "`space.model.w_id.lg`"),
    (_with(objective={"metric": "eval/id_cos", "direction": "up"}), "`objective.direction`"),
    (_with(objective={"metric": "eval/expression", "direction": "maximize"}), "`objective.direction`"),
    (_with(objective={"metric": "eval/nope", "direction": "maximize"}), "`objective.metric`"),
    (_with(objective=[{"metric": "eval/id_top1", "direction": "maximize"}, {"metric": "eval/id_top1",
                                                                            "direction": "maximize"}]), "`objective[1]`"),
    (_with(objective=[{"metric": "eval/id_top1", "direction": "maximize"},
                      {"metric": "eval/pose_deg", "direction": "minimize"}], pruner="median"), "`pruner`"),
    (_with(repeats=0), "`repeats`"),
    (_with(repeat_keys=[]), "`repeat_keys`"),
    (_with(objective={"direction": "maximize"}), "`objective.metric`"),
    (_with(n_trials=0), "`n_trials`"),
    (_with(pruner="hyperband"), "`pruner`"),
    (_with(pruner={"type": "median", "n_warmup": 3}), "`pruner.n_warmup`"),
    (_with(sampler="grid"), "`space.model.w_id`"),
    (_with(sampler="cmaes"), "`sampler`"),
    (_with(budget={"max_iterations": -1}), "`budget.max_iterations`"),
    (_with(overrides=["model.x=1"]), "`overrides`"),
    (_with(max_retries=-1), "`max_retries`"),
])
def test_spec_errors_name_the_key(raw, key):
    with pytest.raises(FaceSwapError) as info:
        validate_spec(raw, "bad.yaml", REPO)
    message = str(info.value)
    assert key in message and "bad.yaml" in message and ";" in message


@pytest.mark.parametrize("metric, reason", [
    ("val/id_cos", "measured by the training identity encoder -- the network the generator is optimised against"),
    ("train/id", "a training or validation number rather than a metric of the evaluation protocol"),
    ("val/rec", "a training or validation number"),
])
def test_a_spec_ranking_by_the_training_encoder_is_refused(metric, reason):
    with pytest.raises(FaceSwapError) as info:
        validate_spec(_with(objective={"metric": metric, "direction": "maximize"}), "bad.yaml", REPO)
    assert reason in str(info.value) and "eval/id_top1" in str(info.value)


def test_a_spec_whose_configs_cannot_log_eval_metrics_is_refused(tmp_path):
    (tmp_path / "plain.yaml").write_text("model: {}\ntrainer: {callbacks: []}\n")
    with pytest.raises(FaceSwapError, match="has no faceswap_pl.callbacks.evaluation.EvaluationCallback"):
        validate_spec(_with(base_config=[str(tmp_path / "plain.yaml")]), "bad.yaml", REPO)
    added = ["--trainer.callbacks+=faceswap_pl.callbacks.evaluation.EvaluationCallback"]
    assert validate_spec(_with(base_config=[str(tmp_path / "plain.yaml")], overrides=added), "ok.yaml", REPO)


def test_spec_file_errors(tmp_path):
    with pytest.raises(FaceSwapError, match="not found"):
        load_spec(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(FaceSwapError, match="not valid YAML at line"):
        load_spec(bad)
    spec_dir = tmp_path / "specs"
    spec_dir.mkdir()
    (spec_dir / "base.yaml").write_text("model: {}\ntrainer:\n  callbacks:\n"
                                        "    - class_path: faceswap_pl.callbacks.evaluation.EvaluationCallback\n")
    (spec_dir / "s.yaml").write_text(yaml.safe_dump(_with(base_config=["base.yaml"])))
    assert load_spec(spec_dir / "s.yaml").base_config == [str((spec_dir / "base.yaml").resolve())]


def test_cli_errors(tmp_path, capsys):
    from faceswap_pl.cli import main

    assert main(["sweep", "run", str(tmp_path / "missing.yaml")]) == 2
    assert "error: Sweep spec" in capsys.readouterr().err
    spec = str(REPO / "sweeps" / "tiny_cpu.yaml")
    assert main(["sweep", "run", spec, "--gpus", "0,x"]) == 2
    assert "--gpus" in capsys.readouterr().err
    assert main(["sweep", "run", spec, "--gpus", "0", "--workers", "2"]) == 2
    assert main(["sweep", "run", spec, "--storage", "redis://host/0", "--out", str(tmp_path)]) == 2
    assert "redis://host/0" in capsys.readouterr().err
    assert main(["sweep", "report", "nostudy", "--out", str(tmp_path)]) == 2
    assert "No sweep journal" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["sweep", "run"])


def test_stale_running_trial_is_failed_and_retried(tmp_path):
    import optuna
    from optuna.trial import TrialState

    from faceswap_pl.sweep.study import beat, fail_stale_trials, open_storage

    spec = validate_spec(GOOD, "t.yaml", REPO)
    study = optuna.create_study(study_name="t", storage=open_storage(str(tmp_path / "t.journal")),
                                direction="maximize")
    dead = study.ask({"model.backbone": optuna.distributions.CategoricalDistribution(["unet", "linknet"])})
    alive = study.ask({"model.backbone": optuna.distributions.CategoricalDistribution(["unet", "linknet"])})
    study._storage.set_trial_system_attr(dead._trial_id, "sweep_heartbeat", [dead._trial_id, time.time() - 120])
    beat(study, alive._trial_id)
    closed = []
    assert fail_stale_trials(study, spec, grace_s=60, on_fail=closed.append) == [dead.number]
    states = {t.number: t.state for t in study.get_trials()}
    assert states[dead.number] == TrialState.FAIL and states[alive.number] == TrialState.RUNNING
    retry = [t for t in study.get_trials() if t.state == TrialState.WAITING]
    assert len(retry) == 1 and retry[0].params == dead.params
    assert retry[0].system_attrs["failed_trial"] == dead.number and closed[0].number == dead.number
    assert fail_stale_trials(study, spec, grace_s=60) == []  # already failed: not retried twice


def _seeded_study(spec, configs):
    """An in-memory study of COMPLETE trials with per-seed final metrics, as the sweep worker records them."""
    import optuna
    from optuna.distributions import CategoricalDistribution

    study = optuna.create_study(study_name="t", directions=spec.directions)
    dists = {name: CategoricalDistribution(p["choices"]) for name, p in spec.space.items()}
    for params, seeds in configs:
        metrics = {str(seed): final for seed, final in seeds.items()}
        means = [sum(f[m] for f in seeds.values()) / len(seeds) for m in spec.metrics]
        study.add_trial(optuna.create_trial(values=means, params=params, distributions=dists,
                                            user_attrs={"seed_metrics": metrics, "mlflow_run_id": "run"}))
    return study


def test_report_gives_intervals_significance_and_factor_effects(tmp_path):
    from faceswap_pl.sweep.report import write_report

    spec = validate_spec(_with(space={"model.backbone": {"type": "categorical", "choices": ["unet", "linknet"]},
                                      "model.num_aad_blocks": {"type": "categorical", "choices": [1, 2]}},
                               objective={"metric": "eval/id_top1", "direction": "maximize"}, repeats=3,
                               sampler="grid"), "t.yaml", REPO)
    protocol = {"eval/gallery_identities": 6.0, "eval/gallery_images": 24.0, "eval/id_top1_chance": 1 / 6,
                "eval/id_top5_chance": 5 / 6}

    def seeds(*values):
        return {seed: {"eval/id_top1": v, "eval/id_cos": v / 2, **protocol} for seed, v in enumerate(values)}

    study = _seeded_study(spec, [
        ({"model.backbone": "unet", "model.num_aad_blocks": 1}, seeds(0.50, 0.52, 0.54)),     # mean 0.52
        ({"model.backbone": "unet", "model.num_aad_blocks": 2}, seeds(0.80, 0.81, 0.82)),     # best, 0.81
        ({"model.backbone": "linknet", "model.num_aad_blocks": 1}, seeds(0.60, 0.90, 0.75)),  # 0.75, wide
        ({"model.backbone": "linknet", "model.num_aad_blocks": 2}, seeds(0.70, 0.72, 0.74)),  # 0.72
    ])
    markdown, plots = write_report(study, spec, tmp_path)
    # the protocol: gallery and chance levels
    assert "all 6 identities of the evaluation split (24 gallery images" in markdown and "0.167 for top-1" in markdown
    rows = [line for line in markdown.splitlines() if line.startswith("| ") and line.split("|")[1].strip().isdigit()
            and "seeds" not in line]
    ranked = [r for r in rows if r.count("±") >= 1]
    assert [r.split("|")[2].strip() for r in ranked[:4]] == ["1", "2", "3", "0"]  # trials by mean id_top1
    # known answers: mean 0.52, s = 0.02, t(0.975, 2) = 4.303 -> half-width 0.0497
    assert "| 0.520 ± 0.050 |" in markdown and "| 0.810 ± 0.025 |" in markdown
    # Welch against the best: 0.52 (tight) differs, 0.75 (wide) is within seed noise
    by_trial = {r.split("|")[2].strip(): r for r in ranked[:4]}
    assert "best" in by_trial["1"] and "worse (p=" in by_trial["0"] and "n.s. (p=" in by_trial["2"]
    # marginal means: unet = mean of 6 runs (0.665), linknet (0.735)
    assert "| model.backbone | unet | 2 | 6 | 0.665 ±" in markdown
    assert "| model.backbone | linknet | 2 | 6 | 0.735 ±" in markdown
    names = {p.name for p in plots}
    assert {"t_configurations.png", "t_factors.png", "t_history.png", "t_heatmap.png"} <= names
    assert all(p.stat().st_size > 1000 for p in plots) and (tmp_path / "report.md").is_file()


def test_report_lists_the_pareto_front_of_several_objectives(tmp_path):
    from faceswap_pl.sweep.report import write_report

    spec = validate_spec(_with(space={"model.backbone": {"type": "categorical", "choices": ["a", "b", "c"]}},
                               objective=[{"metric": "eval/id_top1", "direction": "maximize"},
                                          {"metric": "eval/expression", "direction": "minimize"}]), "t.yaml", REPO)

    def one(top1, expression):
        return {0: {"eval/id_top1": top1, "eval/expression": expression}}

    study = _seeded_study(spec, [({"model.backbone": "a"}, one(0.9, 0.10)), ({"model.backbone": "b"}, one(0.5, 0.05)),
                                 ({"model.backbone": "c"}, one(0.4, 0.20))])  # c is dominated by both
    markdown, _ = write_report(study, spec, tmp_path)
    front = markdown.split("## Pareto front")[1].split("##")[0]
    assert "model.backbone=a" in front and "model.backbone=b" in front and "model.backbone=c" not in front


@pytest.mark.slow
@pytest.mark.ci
def test_cpu_sweep_two_workers_with_a_killed_trial(tmp_path, monkeypatch):
    """2 CPU workers x 4 tiny grid trials; trial 1 SIGKILLs itself mid-training, becomes FAIL and is retried."""
    import mlflow
    from mlflow.tracking import MlflowClient
    from optuna.trial import TrialState
    from rich.console import Console

    from faceswap_pl.sweep.callback import KILL_ENV
    from faceswap_pl.sweep.launcher import report_command, run_sweep
    from faceswap_pl.sweep.study import load_study

    raw = yaml.safe_load((REPO / "sweeps" / "tiny_cpu.yaml").read_text())
    raw["base_config"] = [str(REPO / "experiments" / "tiny_cpu.yaml")]
    raw["overrides"] = [o for o in raw["overrides"] if "pairs" not in o] + [
        "--data.init_args.train_pairs=4", "--data.init_args.val_pairs=4"]  # 1 iteration per epoch
    raw["budget"] = {"max_iterations": 2}  # evaluations at iteration 0 (start) and after the validations at 1 and 2
    raw["pruner"] = "none"  # deterministic: every grid point must complete
    spec_path = tmp_path / "tiny.yaml"
    spec_path.write_text(yaml.safe_dump(raw))
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    monkeypatch.setenv(KILL_ENV, "1")
    monkeypatch.chdir(tmp_path)
    console = Console(width=200, record=True)
    started = time.time()
    assert run_sweep(str(spec_path), workers=2, accelerator="cpu", tracking_uri=uri, out=str(tmp_path / "out"),
                     console=console) == 0
    print(f"sweep took {time.time() - started:.0f} s")

    study, spec = load_study("tiny_cpu", str(tmp_path / "out" / "tiny_cpu.journal"))
    trials = study.get_trials()
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert sorted((t.params["model.backbone"], t.params["model.num_aad_blocks"]) for t in complete) == [
        ("linknet", 1), ("linknet", 2), ("unet", 1), ("unet", 2)]
    killed = next(t for t in trials if t.number == 1)
    assert killed.state == TrialState.FAIL and "signal 9" in killed.user_attrs["error"]
    retry = next(t for t in complete if t.system_attrs.get("failed_trial") == 1)
    assert retry.params == killed.params
    assert all(sorted(t.intermediate_values) == [0, 1, 2] for t in complete)

    client = MlflowClient(uri)
    parent = client.get_run(study.user_attrs["mlflow_parent_run_id"])
    assert parent.info.status == "FINISHED"
    experiment = client.get_experiment_by_name("sweep-tiny_cpu")
    children = client.search_runs([experiment.experiment_id],
                                  f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    by_id = {r.info.run_id: r for r in children}
    assert len(by_id) == len(trials) == 5
    for t in trials:
        run = by_id[t.user_attrs["mlflow_run_id"]]
        assert run.data.tags["trial_state"] == t.state.name
        assert run.data.params["model.backbone"] == t.params["model.backbone"]
        assert run.data.params["model.num_aad_blocks"] == str(t.params["model.num_aad_blocks"])
        if t.state == TrialState.COMPLETE:
            assert run.info.status == "FINISHED" and "eval/id_cos" in run.data.metrics
            assert run.data.metrics["objective"] == pytest.approx(t.value)
            assert run.data.metrics["eval/id_cos"] == pytest.approx(t.value)  # the final evaluation ranks it
        else:
            assert run.info.status == "FAILED"
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"report.md", "tiny_cpu_history.png", "tiny_cpu_heatmap.png", "tiny_cpu_configurations.png"} <= artifacts
    printed = console.export_text()
    assert "Configurations" in printed and "Evaluation protocol" in printed

    markdown = (tmp_path / "out" / "report.md").read_text()
    section = markdown.split("## Configurations")[1].split("##")[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and line.split("|")[1].strip().isdigit()]
    values = [float(r.split("|")[6]) for r in rows]  # rank | trial | backbone | blocks | seeds | eval/id_cos
    assert len(rows) == 4 and values == sorted(values, reverse=True)
    assert report_command(str(spec_path), out=str(tmp_path / "out"), console=console) == 0

    # export --best: the checkpoint of the best completed trial's run
    import json

    from faceswap_pl.cli import main

    best = max(complete, key=lambda t: t.value)
    assert main(["export", "--best", str(spec_path), "--sweep-out", str(tmp_path / "out"),
                 "--out", str(tmp_path / "export")]) == 0
    card = (tmp_path / "export" / "model_card.md").read_text()
    assert best.user_attrs["mlflow_run_id"] in card
    config = json.loads((tmp_path / "export" / "generator.json").read_text())
    assert (config["backbone"], config["num_aad_blocks"]) == (best.params["model.backbone"],
                                                              best.params["model.num_aad_blocks"])
    del mlflow


def test_report_callback_reports_evaluations_and_prunes(tmp_path, monkeypatch):
    """The trial subprocess's Lightning callback: reads the evaluation callback's history after each
    evaluation, reports the objective at its iteration, records the last evaluation, stops when pruned."""
    import json
    from types import SimpleNamespace

    import optuna
    from optuna.distributions import CategoricalDistribution

    from faceswap_pl.callbacks.evaluation import EvaluationCallback
    from faceswap_pl.sweep.callback import CONTEXT_ENV, OptunaReportCallback
    from faceswap_pl.sweep.study import ATTR_SPEC, open_storage

    spec = validate_spec(_with(space={"model.backbone": {"type": "categorical", "choices": ["unet", "linknet"]}},
                               pruner={"type": "median", "n_startup_trials": 2, "n_warmup_steps": 0}),
                         "t.yaml", REPO)
    storage = str(tmp_path / "t.journal")
    study = optuna.create_study(study_name="t", storage=open_storage(storage), direction="maximize")
    study.set_user_attr(ATTR_SPEC, spec.to_json())
    dist = {"model.backbone": CategoricalDistribution(["unet", "linknet"])}
    for value in (0.8, 0.9):  # two finished trials that were far better at every step
        study.add_trial(optuna.create_trial(value=value, params={"model.backbone": "unet"}, distributions=dist,
                                            intermediate_values={0: value, 4: value}))
    trial = study.ask(dist)
    context = {"storage": storage, "study": "t", "trial_id": trial._trial_id, "number": trial.number,
               "metric": "eval/id_cos", "result": str(tmp_path / "r.json"), "retry_of_failed": False, "prune": True}
    (tmp_path / "c.json").write_text(json.dumps(context))
    monkeypatch.setenv(CONTEXT_ENV, str(tmp_path / "c.json"))
    callback = OptunaReportCallback()
    evaluation = EvaluationCallback()
    trainer = SimpleNamespace(sanity_checking=False, is_global_zero=True, should_stop=False,
                              callbacks=[evaluation, callback])
    callback.on_train_batch_end(trainer, None, None, None, 0)
    assert not (tmp_path / "r.json").exists()  # no evaluation yet: nothing reported
    evaluation.history.append({"iteration": 4.0, "id_cos": 0.1, "id_top1": 0.25})
    callback.on_train_batch_end(trainer, None, None, None, 0)
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["values"] == [[4, pytest.approx(0.1)]] and result["pruned"] and trainer.should_stop
    assert result["final"] == {"eval/id_cos": pytest.approx(0.1), "eval/id_top1": pytest.approx(0.25), "iteration": 4}
    assert study.get_trials()[-1].intermediate_values == {4: pytest.approx(0.1)}


def test_later_seeds_of_a_configuration_do_not_prune(tmp_path, monkeypatch):
    import json
    from types import SimpleNamespace

    from faceswap_pl.callbacks.evaluation import EvaluationCallback
    from faceswap_pl.sweep.callback import CONTEXT_ENV, OptunaReportCallback

    context = {"storage": str(tmp_path / "none.journal"), "study": "t", "trial_id": 0, "number": 0,
               "metric": "eval/id_cos", "result": str(tmp_path / "r.json"), "retry_of_failed": False, "prune": False}
    (tmp_path / "c.json").write_text(json.dumps(context))
    monkeypatch.setenv(CONTEXT_ENV, str(tmp_path / "c.json"))
    callback, evaluation = OptunaReportCallback(), EvaluationCallback()
    trainer = SimpleNamespace(sanity_checking=False, is_global_zero=True, should_stop=False,
                              callbacks=[evaluation, callback])
    evaluation.history.append({"iteration": 2.0, "id_cos": 0.3})
    callback.on_train_end(trainer, None)  # would fail to open the (missing) study if it reported
    assert json.loads((tmp_path / "r.json").read_text())["final"]["eval/id_cos"] == pytest.approx(0.3)


@pytest.mark.slow
@pytest.mark.ci
def test_dead_worker_trial_is_failed_and_retried_on_resume(tmp_path, monkeypatch):
    """A worker SIGKILLed mid-trial leaves a RUNNING trial; after the heartbeat grace a resumed sweep fails it and
    retries its parameters."""
    import os
    import signal
    import subprocess
    import sys

    from optuna.trial import TrialState
    from rich.console import Console

    from faceswap_pl.sweep.launcher import prepare, run_sweep
    from faceswap_pl.sweep.study import load_study

    monkeypatch.setenv("FACESWAP_SWEEP_GRACE_S", "10")
    monkeypatch.setenv("FACESWAP_SWEEP_HEARTBEAT_S", "1")
    monkeypatch.chdir(tmp_path)
    raw = {"name": "dw", "base_config": [str(REPO / "experiments" / "tiny_cpu.yaml")],
           "overrides": ["--trainer.num_sanity_val_steps=0", "--trainer.enable_progress_bar=false",
                         "--trainer.enable_checkpointing=false", "--data.init_args.train_pairs=4",
                         "--data.init_args.val_pairs=4"],
           "space": {"model.backbone": {"type": "categorical", "choices": ["unet"]}},
           "objective": {"metric": "eval/id_cos", "direction": "maximize"}, "sampler": "grid", "n_trials": 1,
           "budget": {"max_iterations": 2}}
    spec_path = tmp_path / "dw.yaml"
    spec_path.write_text(yaml.safe_dump(raw))
    out = tmp_path / "out"
    study, spec, storage, _ = prepare(str(spec_path), tracking_uri=f"sqlite:///{tmp_path / 'm.db'}", out=str(out))
    worker = subprocess.Popen([sys.executable, "-m", "faceswap_pl.sweep", "worker", "--study", "dw", "--storage",
                               storage], env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not study.get_trials(states=(TrialState.RUNNING,)) and time.time() < deadline:
        time.sleep(0.5)
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait()
    assert [t.state for t in study.get_trials()] == [TrialState.RUNNING]
    assert run_sweep(str(spec_path), resume=True, out=str(out), console=Console(width=200)) == 0
    study, _ = load_study("dw", storage)
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE]
    assert trials[1].system_attrs["failed_trial"] == 0 and trials[1].params == {"model.backbone": "unet"}


def _postgres_binaries() -> tuple[str, str] | None:
    import glob
    import shutil

    for name in ("initdb", "pg_ctl"):
        if not shutil.which(name) and not glob.glob(f"/usr/lib/postgresql/*/bin/{name}"):
            return None
    found = []
    for name in ("initdb", "pg_ctl"):
        found.append(shutil.which(name) or sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))[-1])
    return found[0], found[1]


@pytest.fixture
def postgres_url():
    """A throw-away PostgreSQL server on 127.0.0.1 (free port) with database `optuna`; yields its SQLAlchemy URL."""
    import os
    import shutil
    import socket
    import subprocess
    import tempfile

    binaries = _postgres_binaries()
    if binaries is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) are not installed: apt-get install postgresql")
    psycopg2 = pytest.importorskip("psycopg2")
    initdb, pg_ctl = binaries
    base = Path(tempfile.mkdtemp(prefix="faceswap-pl-pg-"))
    os.chmod(base, 0o777)
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []  # initdb refuses to run as root
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = base / "data"
    subprocess.run([*as_user, initdb, "-D", str(data), "-U", "sweep", "--auth=trust", "-E", "UTF8"], check=True,
                   stdout=subprocess.DEVNULL)
    subprocess.run([*as_user, pg_ctl, "-D", str(data), "-l", str(base / "server.log"), "-w", "-t", "60",
                    "-o", f"-p {port} -k {base} -c listen_addresses=127.0.0.1", "start"], check=True,
                   stdout=subprocess.DEVNULL)
    try:
        connection = psycopg2.connect(host="127.0.0.1", port=port, user="sweep", dbname="postgres")
        connection.autocommit = True
        connection.cursor().execute("CREATE DATABASE optuna")
        connection.close()
        yield f"postgresql+psycopg2://sweep@127.0.0.1:{port}/optuna"
    finally:
        subprocess.run([*as_user, pg_ctl, "-D", str(data), "-m", "fast", "-w", "stop"], stdout=subprocess.DEVNULL)
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.slow
@pytest.mark.ci
def test_postgres_storage_launcher_and_joined_host(tmp_path, monkeypatch, postgres_url):
    """Two "hosts" share a study in a real PostgreSQL server: the launcher's worker and a `--join` worker split the
    4 grid trials, and the launcher reports all of them."""
    import json
    import os
    import subprocess
    import sys

    import optuna
    from optuna.trial import TrialState
    from rich.console import Console

    from faceswap_pl.sweep.launcher import run_sweep

    raw = yaml.safe_load((REPO / "sweeps" / "tiny_cpu.yaml").read_text())
    raw["base_config"] = [str(REPO / "experiments" / "tiny_cpu.yaml")]
    raw["overrides"] = [o for o in raw["overrides"] if "pairs" not in o] + [
        "--data.init_args.train_pairs=4", "--data.init_args.val_pairs=4", "--trainer.enable_checkpointing=false"]
    raw["budget"] = {"max_iterations": 1}
    raw["pruner"] = "none"
    spec_path = tmp_path / "tiny.yaml"
    spec_path.write_text(yaml.safe_dump(raw))
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    launcher = subprocess.Popen(
        [sys.executable, "-m", "faceswap_pl.cli", "sweep", "run", str(spec_path), "--workers", "1", "--storage",
         postgres_url, "--tracking-uri", uri, "--out", str(tmp_path / "out")],
        stdout=open(tmp_path / "launcher.log", "w"), stderr=subprocess.STDOUT, env={**os.environ, "COLUMNS": "200"})
    deadline = time.time() + 180
    while time.time() < deadline:  # the second host joins once the study exists
        if "tiny_cpu" in [s.study_name for s in optuna.get_all_study_summaries(postgres_url)]:
            break
        assert launcher.poll() is None, (tmp_path / "launcher.log").read_text()
        time.sleep(1)
    assert run_sweep(str(spec_path), workers=1, accelerator="cpu", storage=postgres_url, join=True,
                     console=Console(width=200)) == 0
    assert launcher.wait(timeout=600) == 0, (tmp_path / "launcher.log").read_text()

    study = optuna.load_study(study_name="tiny_cpu", storage=postgres_url)
    complete = [t for t in study.get_trials() if t.state == TrialState.COMPLETE]
    assert len(complete) == 4
    pids = {json.loads(p.read_text())["worker_pid"] for p in (tmp_path / "out" / "trials").glob("trial-*[0-9].json")}
    assert len(pids) == 2, "both hosts' workers should have run trials"
    assert "Configurations" in (tmp_path / "launcher.log").read_text()


def test_gpu_workers_get_one_gpu_each_and_their_own_seeds(tmp_path, monkeypatch):
    """`--gpus 0,2,5`: three worker processes, worker i sees only GPU i of the list, trains on `gpu`, its own seed."""
    import subprocess

    from rich.console import Console

    from faceswap_pl.sweep import launcher

    started = []

    class FakeWorker:
        returncode = 0

        def __init__(self, argv, env=None, **kwargs):
            started.append((argv, env))

        def poll(self):
            return 0

        def wait(self, timeout=None):
            return 0

    from types import SimpleNamespace

    monkeypatch.setattr(launcher, "subprocess", SimpleNamespace(Popen=FakeWorker, STDOUT=subprocess.STDOUT,
                                                                TimeoutExpired=subprocess.TimeoutExpired))
    monkeypatch.setattr(launcher, "_progress", lambda *args, **kwargs: None)
    monkeypatch.chdir(tmp_path)
    spec = tmp_path / "t.yaml"
    spec.write_text(yaml.safe_dump({**GOOD, "base_config": [str(REPO / "experiments" / "tiny_cpu.yaml")]}))
    launcher.run_sweep(str(spec), gpus="0,2,5", tracking_uri=f"sqlite:///{tmp_path / 'm.db'}", out=str(tmp_path / "o"),
                       console=Console(width=200))
    assert [env["CUDA_VISIBLE_DEVICES"] for _, env in started] == ["0", "2", "5"]
    for argv, _ in started:
        assert argv[argv.index("--accelerator") + 1] == "gpu"
    seeds = [int(argv[argv.index("--seed") + 1]) for argv, _ in started]
    assert len(set(seeds)) == 3


@pytest.mark.slow
@pytest.mark.ci
def test_cpu_ablation_over_seeds_reports_intervals(tmp_path, monkeypatch, demo_shards, capsys):
    """sweeps/ablation_cpu.yaml on the demo shards: unet / linknet / resnet x 2 seeds with 2 CPU workers. Every
    configuration gets a run per seed nested under its own run, the report gives mean ± 95% interval per backbone
    with the gallery and chance level and the Welch verdicts, and the runs group by backbone."""
    import json

    from mlflow.tracking import MlflowClient
    from optuna.trial import TrialState
    from rich.console import Console

    from faceswap_pl.cli import main
    from faceswap_pl.sweep.launcher import run_sweep
    from faceswap_pl.sweep.study import load_study

    raw = yaml.safe_load((REPO / "sweeps" / "ablation_cpu.yaml").read_text())
    raw["base_config"] = [str(REPO / "experiments" / "demo.yaml")]
    raw["overrides"] += [f"--data.init_args.train={demo_shards / 'train'}",
                         f"--data.init_args.val={demo_shards / 'val'}"]
    raw["budget"] = {"max_iterations": 6}  # the machinery, quickly; the README's figures use the spec's budget
    spec_path = tmp_path / "ablation_cpu.yaml"
    spec_path.write_text(yaml.safe_dump(raw))
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    monkeypatch.chdir(tmp_path)
    console = Console(width=250, record=True)
    started = time.time()
    assert run_sweep(str(spec_path), workers=2, accelerator="cpu", tracking_uri=uri, out=str(tmp_path / "out"),
                     console=console) == 0
    print(f"ablation took {time.time() - started:.0f} s")

    study, spec = load_study("ablation_cpu", str(tmp_path / "out" / "ablation_cpu.journal"))
    complete = [t for t in study.get_trials() if t.state == TrialState.COMPLETE]
    assert sorted(t.params["model.backbone"] for t in complete) == ["linknet", "resnet", "unet"]
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("sweep-ablation_cpu").experiment_id
    for trial in complete:
        seeds = trial.user_attrs["seed_metrics"]
        assert sorted(seeds) == ["0", "1"] and all(s["iteration"] == 6 for s in seeds.values())
        mean = sum(s["eval/id_top1"] for s in seeds.values()) / 2
        assert trial.value == pytest.approx(mean)
        config_run = client.get_run(trial.user_attrs["mlflow_run_id"])
        assert config_run.data.metrics["mean/eval/id_top1"] == pytest.approx(mean)
        assert "ci95/eval/id_cos" in config_run.data.metrics
        nested = client.search_runs([experiment], f"tags.`mlflow.parentRunId` = '{config_run.info.run_id}'")
        assert sorted(r.data.tags["sweep.seed"] for r in nested) == ["0", "1"]
        assert all(r.data.params["seed"] == r.data.tags["sweep.seed"] and r.info.status == "FINISHED" for r in nested)
        assert {r.data.metrics["eval/id_top1"] for r in nested} == {s["eval/id_top1"] for s in seeds.values()}

    markdown = (tmp_path / "out" / "report.md").read_text()
    assert "each trained with 2 seed(s) (0, 1)" in markdown
    assert "all 6 identities of the evaluation split" in markdown and "0.167 for top-1" in markdown
    table = markdown.split("## Configurations")[1].split("## Factors")[0]
    rows = [line for line in table.splitlines() if line.startswith("| ") and line.split("|")[1].strip().isdigit()]
    assert len(rows) == 3 and all("±" in row for row in rows) and "best" in rows[0]
    assert all(("n.s. (p=" in row) or ("worse (p=" in row) for row in rows[1:])
    parent = study.user_attrs["mlflow_parent_run_id"]
    artifacts = {a.path for a in client.list_artifacts(parent)}
    assert {"report.md", "ablation_cpu_configurations.png", "ablation_cpu_factors.png"} <= artifacts

    capsys.readouterr()
    assert main(["runs", "compare", "--tracking-uri", uri, "--experiment", "sweep-ablation_cpu", "--group-by",
                 "model.backbone", "--metric", "eval/id_top1", "--no-plot"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in ("unet", "linknet", "resnet")) and "±" in out
    # export --best: the best configuration's best seed run holds the checkpoint
    assert main(["export", "--best", str(spec_path), "--sweep-out", str(tmp_path / "out"), "--no-onnx",
                 "--out", str(tmp_path / "export")]) == 0
    config = json.loads((tmp_path / "export" / "generator.json").read_text())
    best = max(complete, key=lambda t: t.value)
    assert config["backbone"] == best.params["model.backbone"]
