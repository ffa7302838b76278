"""`faceswap-pl sweep run`: create the study, MLflow experiment and parent run, start workers, report."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState
from rich.markdown import Markdown
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from faceswap_pl.errors import FaceSwapError
from faceswap_pl.runs.store import resolve_tracking_uri
from faceswap_pl.sweep.report import log_report, write_report
from faceswap_pl.sweep.spec import load_spec
from faceswap_pl.sweep.study import (
    ATTR_EXPERIMENT,
    ATTR_OUT,
    ATTR_PARENT,
    ATTR_SPEC,
    ATTR_URI,
    default_storage,
    grid_points,
    is_rdb,
    load_study,
    make_pruner,
    make_sampler,
    open_storage,
)
from faceswap_pl.sweep.worker import effective_trials

DEFAULT_OUT = Path("outputs") / "sweeps"


def parse_gpus(text: str) -> list[str]:
    gpus = [g.strip() for g in text.split(",") if g.strip()]
    if not gpus or any(not g.isdigit() for g in gpus) or len(set(gpus)) != len(gpus):
        raise FaceSwapError(f"--gpus {text!r} is not a comma-separated list of distinct GPU indices; "
                            f"write e.g. --gpus 0,1.")
    return gpus


def prepare(spec_path, storage=None, resume=False, join=False, tracking_uri=None, out=None):
    """Create (or load) the study, the MLflow experiment and the parent run; return (study, spec, storage, out)."""
    spec = load_spec(spec_path)
    out = Path(out or DEFAULT_OUT / spec.name).resolve()
    out.mkdir(parents=True, exist_ok=True)
    storage = storage or default_storage(out, spec.name)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    backend = open_storage(storage)
    exists = spec.name in [s.study_name for s in optuna.get_all_study_summaries(backend)]
    if exists and not (resume or join):
        raise FaceSwapError(f"Study {spec.name!r} already exists in {storage}; pass --resume to continue it, "
                            f"--join to add workers to it, or another --out/--storage for a fresh sweep.")
    if join and not exists:
        raise FaceSwapError(f"--join found no study {spec.name!r} in {storage}; start it first with "
                            f"`faceswap-pl sweep run {spec_path} --storage {storage}`.")
    if exists:
        study, stored = load_study(spec.name, storage)
        if stored.space != spec.space or stored.objectives != spec.objectives or stored.repeats != spec.repeats:
            raise FaceSwapError(f"Study {spec.name!r} in {storage} was created with another space or objective; "
                                f"(or repeats); restore the spec or start a fresh sweep with another --out/--storage.")
        uri = study.user_attrs[ATTR_URI]
        if not join:  # this launcher owns the parent run again
            client = MlflowClient(uri)
            client.update_run(study.user_attrs[ATTR_PARENT], status="RUNNING")
            study.set_user_attr(ATTR_SPEC, spec.to_json())  # e.g. a raised n_trials
        return study, spec, storage, out
    uri = resolve_tracking_uri(tracking_uri)
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(spec.experiment)
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(spec.experiment)
    parent = client.create_run(experiment_id, run_name=f"sweep-{spec.name}",
                               tags={"sweep": spec.name, "optuna.storage": storage, "sweep.role": "parent"})
    for key, value in (("objective", "; ".join(f"{d} {m}" for m, d in spec.objectives)), ("n_trials", spec.n_trials),
                       ("sampler", spec.sampler), ("pruner", spec.pruner.get("type")), ("repeats", spec.repeats),
                       ("seeds", ", ".join(map(str, spec.seeds()))), ("space", ", ".join(spec.space)),
                       ("spec", spec.source)):
        client.log_param(parent.info.run_id, key, str(value)[:500])
    study = optuna.create_study(study_name=spec.name, storage=backend, directions=spec.directions,
                                sampler=make_sampler(spec, spec.seed), pruner=make_pruner(spec))
    if spec.sampler == "grid":
        for point in grid_points(spec):
            study.enqueue_trial(point, skip_if_exists=True)
    for key, value in ((ATTR_SPEC, spec.to_json()), (ATTR_PARENT, parent.info.run_id),
                       (ATTR_EXPERIMENT, experiment_id), (ATTR_URI, uri), (ATTR_OUT, str(out))):
        study.set_user_attr(key, value)
    return study, spec, storage, out


def _progress(study, n_trials: int, workers: list, console) -> None:
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total} trials"),
                  TimeElapsedColumn(), console=console, transient=not console.is_terminal) as progress:
        task = progress.add_task("sweep", total=n_trials)
        while any(w.poll() is None for w in workers):
            trials = study.get_trials(deepcopy=False)
            n = {s: sum(t.state == s for t in trials) for s in TrialState}
            done = n[TrialState.COMPLETE] + n[TrialState.PRUNED]
            progress.update(task, completed=min(done, n_trials),
                            description=f"running {n[TrialState.RUNNING]}, failed {n[TrialState.FAIL]}, "
                                        f"pruned {n[TrialState.PRUNED]}")
            time.sleep(1)


def worker_threads(workers: int) -> dict[str, str]:
    """``OMP_NUM_THREADS`` for each of ``workers`` processes on this host: the cores shared out (at least 1).

    Every trial would otherwise start as many threads as the host has cores; with several workers on one host
    the OpenMP thread pools then spin against each other (measured here: two CPU trials side by side ran 10x
    slower each than with one thread apiece). An ``OMP_NUM_THREADS`` already set is kept.
    """
    if "OMP_NUM_THREADS" in os.environ:
        return {}
    return {"OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // max(1, workers)))}


def run_sweep(spec_path, gpus=None, workers=None, accelerator=None, storage=None, resume=False, join=False,
              tracking_uri=None, out=None, console=None) -> int:
    if gpus and (workers or (accelerator and accelerator != "gpu")):
        raise FaceSwapError("--gpus starts one worker per listed GPU; do not combine it with --workers or "
                            "--accelerator cpu.")
    if workers is not None and workers < 1:
        raise FaceSwapError(f"--workers {workers} must be at least 1.")
    if (workers or 1) > 1 and accelerator in ("gpu", "auto"):
        raise FaceSwapError(f"--workers {workers} --accelerator {accelerator} would put every worker on the same "
                            f"GPU; give one worker per GPU with --gpus 0,1,... instead.")
    gpu_list = parse_gpus(gpus) if gpus else None
    study, spec, storage, out = prepare(spec_path, storage, resume, join, tracking_uri, out)
    attrs = study.user_attrs
    slots = [{"CUDA_VISIBLE_DEVICES": g} for g in gpu_list] if gpu_list else \
        [{"CUDA_VISIBLE_DEVICES": ""} if (accelerator or "cpu") == "cpu" else {} for _ in range(workers or 1)]
    threads = worker_threads(len(slots))
    for env in slots:
        env.update(threads)
    device = "gpu" if gpu_list else (accelerator or "cpu")
    logs = out / "logs"
    logs.mkdir(exist_ok=True)
    offset = len(list(logs.glob("worker-*.log")))  # --resume/--join: new seeds, new log files
    console.print(f"sweep {spec.name}: {effective_trials(spec)} trials, {len(slots)} {device} worker(s); "
                  f"storage {storage}; MLflow {attrs[ATTR_URI]} experiment {spec.experiment} parent run "
                  f"{attrs[ATTR_PARENT]}; logs in {logs}")
    procs = []
    try:
        for i, env in enumerate(slots):
            index = offset + i
            log = open(logs / f"worker-{index}.log", "w")
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "faceswap_pl.sweep", "worker", "--study", spec.name, "--storage", storage,
                 "--index", str(index), "--seed", str(spec.seed + index), "--accelerator", device],
                stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **env}, start_new_session=True))
            log.close()
        _progress(study, effective_trials(spec), procs, console)
    except KeyboardInterrupt:
        console.print("interrupted: stopping the workers (their running trials become FAIL)")
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        raise
    bad = [i for i, p in enumerate(procs) if p.returncode != 0]
    for i in bad:
        console.print(f"[red]worker {offset + i} exited with code {procs[i].returncode}; see "
                      f"{logs / f'worker-{offset + i}.log'}[/red]")
    if join:
        console.print("workers finished; the launcher that created the study writes the report")
        return 1 if bad else 0
    markdown, plots = write_report(study, spec, out)

    done = sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in study.get_trials(deepcopy=False))
    try:
        log_report(attrs[ATTR_URI], attrs[ATTR_PARENT], [out / "report.md", *plots])
        MlflowClient(attrs[ATTR_URI]).set_terminated(
            attrs[ATTR_PARENT], "FINISHED" if done >= effective_trials(spec) else "FAILED")
    except Exception as error:
        console.print(f"[yellow]could not log the report to MLflow: {error}[/yellow]")
    console.print(Markdown(markdown))
    console.print(f"report: {out / 'report.md'}; plots: {', '.join(str(p) for p in plots) or 'none'}")
    return 0 if done >= effective_trials(spec) and not bad else 1


def open_sweep(target: str, storage=None, out=None):
    """The study of a sweep named by its study name or spec YAML; returns (study, spec, sweep folder)."""
    path = Path(target)
    if path.suffix in (".yaml", ".yml") or path.is_file():
        name = load_spec(path).name
    else:
        name = target
    base = Path(out) if out else DEFAULT_OUT / name
    storage = storage or default_storage(base, name)
    if not is_rdb(storage) and not Path(storage).is_file():
        raise FaceSwapError(f"No sweep journal at {storage}; pass --storage URL (or --out DIR) of the sweep "
                            f"{name!r}.")
    study, spec = load_study(name, storage)
    return study, spec, Path(out) if out else Path(study.user_attrs.get(ATTR_OUT, base))


def best_trial_run(target: str, storage=None, out=None) -> tuple[str, str, object]:
    """(MLflow run id, tracking URI, trial) of the best completed configuration of a sweep.

    Best: by the (mean) objective; in a multi-objective study, the Pareto-front configuration best on the
    first objective. With repeats, the run is that configuration's seed whose final evaluation is best on it.
    """
    study, spec, _ = open_sweep(target, storage, out)
    complete = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE and t.values]
    if not complete:
        raise FaceSwapError(f"Sweep {spec.name!r} has no completed trial yet; wait for one, or continue it with "
                            f"`faceswap-pl sweep run {spec.source or spec.name} --resume`.")
    if spec.multi_objective:
        front = {t.number for t in study.best_trials}
        complete = [t for t in complete if t.number in front]
    sign = -1.0 if spec.direction == "maximize" else 1.0
    best = min(complete, key=lambda t: sign * t.values[0])
    seed_runs = best.user_attrs.get("seed_runs") or {}
    seed_metrics = best.user_attrs.get("seed_metrics") or {}
    scored = [(sign * seed_metrics[seed][spec.metric], run) for seed, run in seed_runs.items()
              if seed in seed_metrics and spec.metric in seed_metrics[seed]]
    run_id = min(scored)[1] if scored else best.user_attrs.get("mlflow_run_id")
    if not run_id:
        raise FaceSwapError(f"Trial {best.number} of sweep {spec.name!r} has no MLflow run id; export its checkpoint "
                            f"with --checkpoint PATH.")
    return run_id, study.user_attrs[ATTR_URI], best


def report_command(target: str, storage=None, out=None, console=None) -> int:
    study, spec, out = open_sweep(target, storage, out)
    markdown, plots = write_report(study, spec, out)
    try:
        log_report(study.user_attrs[ATTR_URI], study.user_attrs[ATTR_PARENT], [out / "report.md", *plots])
    except Exception as error:
        console.print(f"[yellow]could not log the report to MLflow: {error}[/yellow]")
    console.print(Markdown(markdown))
    console.print(f"report: {out / 'report.md'}; plots: {', '.join(str(p) for p in plots) or 'none'}")
    return 0
