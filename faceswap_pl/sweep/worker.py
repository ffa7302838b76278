"""A sweep worker: loops over Optuna trials, training each in its own subprocess.

A subprocess per trial isolates crashes (a segfault or an out-of-memory kill fails one trial, not the
worker), frees all GPU memory between trials, and lets the worker mark a killed trial FAIL and retry it.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import optuna
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from faceswap_pl.stats import describe
from faceswap_pl.sweep.callback import CONTEXT_ENV
from faceswap_pl.sweep.spec import SweepSpec, cli_value
from faceswap_pl.sweep.study import (
    ATTR_EXPERIMENT,
    ATTR_OUT,
    ATTR_PARENT,
    ATTR_URI,
    HEARTBEAT_S,
    beat,
    fail_stale_trials,
    load_study,
    retry_trial,
    suggest,
)

CALLBACK = "faceswap_pl.sweep.callback.OptunaReportCallback"


class TrialCrashed(RuntimeError):
    """The trial's training subprocess exited with an error or was killed."""


def effective_trials(spec: SweepSpec) -> int:
    if spec.sampler == "grid":
        size = 1
        for values in spec.grid().values():
            size *= len(values)
        return min(spec.n_trials, size)
    return spec.n_trials


def trial_argv(spec: SweepSpec, params: dict, accelerator: str, tracking_uri: str, run_id: str, number: int,
               root: Path) -> list[str]:
    argv = ["fit", *spec.fixed_args()]
    argv += [f"--trainer.accelerator={accelerator}", "--trainer.devices=1",
             f"--trainer.default_root_dir={root}",
             f"--trainer.logger.init_args.tracking_uri={tracking_uri}",
             f"--trainer.logger.init_args.experiment_name={spec.experiment}",
             f"--trainer.logger.init_args.run_name=trial-{number}",
             f"--trainer.logger.init_args.run_id={run_id}",
             f"--trainer.callbacks+={CALLBACK}"]
    argv += [f"--{key}={cli_value(value)}" for key, value in params.items()]
    return argv


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def run_worker(study_name: str, storage: str, index: int, seed: int, accelerator: str) -> int:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study, spec = load_study(study_name, storage, seed=seed)
    attrs = study.user_attrs
    tracking_uri, parent, experiment_id = attrs[ATTR_URI], attrs[ATTR_PARENT], attrs[ATTR_EXPERIMENT]
    out = Path(attrs[ATTR_OUT])
    (out / "trials").mkdir(parents=True, exist_ok=True)
    client = MlflowClient(tracking_uri)
    n_trials = effective_trials(spec)
    _log(f"worker {index} (seed {seed}, {accelerator}, CUDA_VISIBLE_DEVICES="
         f"{os.environ.get('CUDA_VISIBLE_DEVICES', '')!r}) on study {study_name}")

    def close_run(frozen) -> None:
        run_id = frozen.user_attrs.get("mlflow_run_id")
        if not run_id:
            return
        try:
            client.set_tag(run_id, "trial_state", frozen.state.name)
            for i, value in enumerate(frozen.values or []):
                client.log_metric(run_id, "objective" if i == 0 else f"objective_{i}", value)
            status = "FINISHED" if frozen.state in (TrialState.COMPLETE, TrialState.PRUNED) else "FAILED"
            client.set_terminated(run_id, status)
        except Exception as error:  # tracking hiccups must not stop the sweep
            _log(f"could not update MLflow run {run_id}: {error}")

    def after_trial(study_, frozen) -> None:
        close_run(frozen)
        _log(f"trial {frozen.number}: {frozen.state.name} values={frozen.values} params={frozen.params}")
        if frozen.state == TrialState.FAIL:
            history = frozen.system_attrs.get("retry_history", [])
            if retry_trial(study_, frozen, spec.max_retries):
                _log(f"trial {frozen.number} failed; retry {len(history) + 1}/{spec.max_retries} enqueued")
            else:
                _log(f"trial {frozen.number} failed; no retries left (max_retries={spec.max_retries})")

    def train(trial, run_id: str, label: str, params: dict, extra: list[str], prune: bool) -> dict[str, float]:
        """One training subprocess into MLflow run ``run_id``; returns its last evaluation's metrics."""
        number = trial.number
        system_attrs = study._storage.get_trial(trial._trial_id).system_attrs
        stem = out / "trials" / label
        result = stem.with_suffix(".result.json")
        result.unlink(missing_ok=True)
        context = {"storage": storage, "study": study_name, "trial_id": trial._trial_id, "number": number,
                   "metric": spec.metric, "result": str(result), "retry_of_failed": "failed_trial" in system_attrs,
                   "worker_pid": os.getpid(), "prune": prune and not spec.multi_objective}
        stem.with_suffix(".json").write_text(json.dumps(context))
        argv = trial_argv(spec, params, accelerator, tracking_uri, run_id, number, out / "trials") + extra
        env = {**os.environ, CONTEXT_ENV: str(stem.with_suffix(".json"))}
        _log(f"{label} started: {params} {' '.join(extra)} (log: {stem.with_suffix('.log')})")
        with open(stem.with_suffix(".log"), "w") as log:
            proc = subprocess.Popen([sys.executable, "-m", "faceswap_pl.cli", *argv], stdout=log,
                                    stderr=subprocess.STDOUT, env=env)
            try:
                last_beat = 0.0
                while proc.poll() is None:
                    if time.time() - last_beat >= HEARTBEAT_S:
                        beat(study, trial._trial_id)
                        last_beat = time.time()
                    time.sleep(0.5)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        outcome = json.loads(result.read_text()) if result.is_file() else {"values": [], "pruned": False, "final": {}}
        if proc.returncode != 0:
            how = f"killed by signal {-proc.returncode}" if proc.returncode < 0 else f"exit code {proc.returncode}"
            trial.set_user_attr("error", how)
            raise TrialCrashed(f"{label} training {how}; see {stem.with_suffix('.log')}")
        if outcome["pruned"]:
            raise optuna.TrialPruned(f"pruned at iteration {outcome['values'][-1][0]}")
        missing = [m for m in spec.metrics if m not in outcome.get("final", {})]
        if missing:
            trial.set_user_attr("error", f"{', '.join(missing)} never logged")
            raise TrialCrashed(f"{label} never logged {', '.join(missing)}; the trial config needs "
                               f"faceswap_pl.callbacks.evaluation.EvaluationCallback (see {stem.with_suffix('.log')})")
        return outcome["final"]

    def objective(trial):
        beat(study, trial._trial_id)
        params = suggest(trial, spec)
        number = trial.number
        system_attrs = study._storage.get_trial(trial._trial_id).system_attrs
        tags = {"mlflow.parentRunId": parent, "trial_state": "RUNNING", "optuna.study": study_name,
                "optuna.trial": str(number), "sweep.worker": str(index), "sweep.repeats": str(spec.repeats)}
        if "failed_trial" in system_attrs:
            tags["optuna.retry_of"] = str(system_attrs["failed_trial"])
        run = client.create_run(experiment_id, run_name=f"trial-{number}", tags=tags)
        run_id = run.info.run_id
        trial.set_user_attr("mlflow_run_id", run_id)
        for key, value in params.items():
            client.log_param(run_id, key, cli_value(value))
        if spec.repeats == 1:  # the trial's run is the training run
            finals = {None: train(trial, run_id, f"trial-{number}", params, [], prune=True)}
            seed_runs = {None: run_id}
        else:  # one nested run per seed under the configuration's run
            finals, seed_runs = {}, {}
            for repeat, seed in enumerate(spec.seeds()):
                seed_run = client.create_run(experiment_id, run_name=f"trial-{number}-seed-{seed}", tags={
                    "mlflow.parentRunId": run_id, "optuna.study": study_name, "optuna.trial": str(number),
                    "sweep.seed": str(seed), "sweep.repeat": str(repeat), "trial_state": "RUNNING"})
                seed_runs[seed] = seed_run.info.run_id
                trial.set_user_attr("seed_runs", {str(k): v for k, v in seed_runs.items()})
                for key, value in params.items():
                    client.log_param(seed_run.info.run_id, key, cli_value(value))
                client.log_param(seed_run.info.run_id, "seed", seed)
                extra = [f"--{key}={seed}" for key in spec.repeat_keys]
                try:
                    finals[seed] = train(trial, seed_run.info.run_id, f"trial-{number}-seed-{seed}", params, extra,
                                         prune=repeat == 0)
                except BaseException:
                    _close_nested(client, seed_run.info.run_id, "FAILED")
                    raise
                _close_nested(client, seed_run.info.run_id, "FINISHED")
        summary = summarize_seeds(finals)
        trial.set_user_attr("seed_metrics", {str(seed): final for seed, final in finals.items()})
        trial.set_user_attr("seed_runs", {str(k): v for k, v in seed_runs.items()})
        if spec.repeats > 1:  # a single run already holds its eval/* curves
            _log_summary(client, run_id, summary)
        values = [summary[metric]["mean"] for metric in spec.metrics]
        return values if spec.multi_objective else values[0]

    max_total = n_trials * (spec.max_retries + 2)
    while True:
        fail_stale_trials(study, spec, on_fail=close_run)
        trials = study.get_trials(deepcopy=False)
        count = {state: sum(t.state == state for t in trials) for state in TrialState}
        done = count[TrialState.COMPLETE] + count[TrialState.PRUNED]
        running, waiting = count[TrialState.RUNNING], count[TrialState.WAITING]
        if done >= n_trials:
            break
        if len(trials) >= max_total and waiting == 0:
            _log(f"stopping: {len(trials)} trials started, {count[TrialState.FAIL]} failed; too many failures")
            break
        if spec.sampler == "grid" and waiting == 0:  # every grid point was enqueued by the launcher
            if running == 0:
                _log(f"stopping: the grid is done ({count[TrialState.FAIL]} failed trials, no retries left)")
                break
            time.sleep(2)
            continue
        if waiting == 0 and done + running >= n_trials:
            time.sleep(2)  # the remaining trials run elsewhere; stay to pick up their retries
            continue
        study.optimize(objective, n_trials=1, catch=(Exception,), callbacks=[after_trial])
    _log(f"worker {index} done")
    return 0


def summarize_seeds(finals: dict) -> dict[str, dict[str, float]]:
    """metric -> {mean, std, ci95, n} over the seeds' final evaluations (:func:`~faceswap_pl.stats.describe`)."""
    metrics = sorted({key for final in finals.values() for key in final if key.startswith("eval/")})
    return {metric: describe([final[metric] for final in finals.values() if metric in final]) for metric in metrics}


def _log_summary(client, run_id: str, summary: dict[str, dict[str, float]]) -> None:
    """The configuration's figures over its seeds on its MLflow run: ``mean/``, ``std/`` and ``ci95/`` (half-width)."""
    for metric, figures in summary.items():
        for name in ("mean", "std", "ci95"):
            if math.isfinite(figures[name]):
                client.log_metric(run_id, f"{name}/{metric}", figures[name])


def _close_nested(client, run_id: str, status: str) -> None:
    try:
        client.set_tag(run_id, "trial_state", "COMPLETE" if status == "FINISHED" else "FAIL")
        client.set_terminated(run_id, status)
    except Exception as error:  # tracking hiccups must not stop the sweep
        _log(f"could not close MLflow run {run_id}: {error}")
