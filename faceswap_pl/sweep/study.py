"""Optuna storages, samplers and pruners for a sweep (optuna is imported inside the functions)."""

from __future__ import annotations

import itertools
import os
import re
import time
from pathlib import Path

import optuna
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.trial import TrialState

from faceswap_pl.errors import FaceSwapError
from faceswap_pl.sweep.spec import SweepSpec

RDB_SCHEMES = ("sqlite", "postgresql", "postgres", "mysql", "mariadb", "oracle", "mssql")
# a running trial's worker writes a heartbeat this often; a RUNNING trial without one for GRACE_S belongs to a
# dead worker: FAIL and retry (the environment variables shorten them for tests)
HEARTBEAT_S = float(os.environ.get("FACESWAP_SWEEP_HEARTBEAT_S", 10))
GRACE_S = float(os.environ.get("FACESWAP_SWEEP_GRACE_S", 60))
# study user attributes written by the launcher
ATTR_SPEC, ATTR_PARENT, ATTR_EXPERIMENT, ATTR_URI, ATTR_OUT = ("spec", "mlflow_parent_run_id",
                                                                "mlflow_experiment_id", "tracking_uri", "out")


def is_rdb(url: str) -> bool:
    match = re.match(r"([a-z][a-z0-9]*)(\+[a-z0-9_]+)?://", url.lower())
    return bool(match) and match.group(1) in RDB_SCHEMES


def default_storage(out: Path, name: str) -> str:
    return str((Path(out) / f"{name}.journal").resolve())


def open_storage(url: str):
    """An RDB URL (sqlite:///..., postgresql://...), else a journal file path.

    Both kinds of storage get the sweep's own heartbeat (:func:`beat` / :func:`fail_stale_trials`), one
    mechanism for both instead of Optuna's RDB-only heartbeat and its ``failed_trial_callback`` (deprecated).
    """
    if is_rdb(url):
        try:
            return optuna.storages.RDBStorage(url)
        except Exception as error:  # driver missing, server unreachable
            raise FaceSwapError(f"Optuna storage {url} cannot be opened ({type(error).__name__}: "
                                f"{str(error).splitlines()[0][:200]}); check the URL, the server and its "
                                f"Python driver.") from None
    if "://" in url:
        raise FaceSwapError(f"Optuna storage {url!r} is neither an RDB URL ({', '.join(RDB_SCHEMES)}) nor a "
                            f"journal file path; use e.g. sqlite:///sweep.db or out/sweep.journal.")

    path = Path(url).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(path)))


def make_sampler(spec: SweepSpec, seed: int):
    if spec.sampler in ("grid", "random"):  # grid: the launcher enqueues every grid point (see grid_points)
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True)


def make_pruner(spec: SweepSpec):
    if spec.pruner.get("type") == "median":
        options = {k: v for k, v in spec.pruner.items() if k != "type"}
        return optuna.pruners.MedianPruner(**options)
    return optuna.pruners.NopPruner()


def grid_points(spec: SweepSpec) -> list[dict]:
    """Every combination of a grid spec, in spec order, at most ``n_trials`` of them.

    They are enqueued as WAITING trials that workers pop atomically from the storage, so parallel
    workers never run the same point twice (Optuna's GridSampler can, under concurrency).
    """
    grid = spec.grid()
    points = [dict(zip(grid, values)) for values in itertools.product(*grid.values())]
    return points[:spec.n_trials]


def suggest(trial, spec: SweepSpec) -> dict:
    params = {}
    for name, p in spec.space.items():
        if p["type"] == "categorical":
            params[name] = trial.suggest_categorical(name, p["choices"])
        elif p["type"] == "int":
            params[name] = trial.suggest_int(name, p["low"], p["high"], step=p.get("step", 1), log=p["log"])
        else:
            params[name] = trial.suggest_float(name, p["low"], p["high"], step=p.get("step"), log=p["log"])
    return params


def load_study(name: str, storage_url: str, spec: SweepSpec | None = None, seed: int = 0):
    """Load an existing study; its spec comes from the study's user attributes when not given."""
    storage = open_storage(storage_url)
    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        raise FaceSwapError(f"No study {name!r} in storage {storage_url}; start it with `faceswap-pl sweep run "
                            f"SPEC` or pass the --storage it was created in.") from None
    if spec is None:
        text = study.user_attrs.get(ATTR_SPEC)
        if not text:
            raise FaceSwapError(f"Study {name!r} in {storage_url} was not created by `faceswap-pl sweep run`; "
                                f"start a new sweep with a spec.")
        spec = SweepSpec.from_json(text)
    return optuna.load_study(study_name=name, storage=storage, sampler=make_sampler(spec, seed),
                             pruner=make_pruner(spec)), spec


def retry_trial(study, trial, max_retries: int) -> bool:
    """Enqueue a FAIL trial's parameters again (at most ``max_retries`` times per original trial).

    The retry carries ``failed_trial`` (the first trial number) and ``retry_history`` system
    attributes, as Optuna's deprecated RetryFailedTrialCallback did.
    """
    history = list(trial.system_attrs.get("retry_history", [])) + [trial.number]
    if len(history) > max_retries:
        return False
    study.add_trial(optuna.create_trial(
        state=optuna.trial.TrialState.WAITING, params=trial.params, distributions=trial.distributions,
        system_attrs={"failed_trial": trial.system_attrs.get("failed_trial", trial.number),
                      "retry_history": history}))
    return True


def beat(study, trial_id: int) -> None:
    """Record that a running trial's worker is alive (journal storages)."""
    # keyed by trial id: a retry copies its failed trial's system attributes, heartbeat included
    study._storage.set_trial_system_attr(trial_id, "sweep_heartbeat", [trial_id, time.time()])


def fail_stale_trials(study, spec: SweepSpec, grace_s: float = GRACE_S, on_fail=None) -> list[int]:
    """FAIL the RUNNING trials whose heartbeat is older than ``grace_s`` and enqueue their retries.

    The heartbeat is the trial's ``sweep_heartbeat`` system attribute, written by its worker (:func:`beat`).
    """
    storage = study._storage
    failed = []
    now = time.time()
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        heartbeat = trial.system_attrs.get("sweep_heartbeat")
        if heartbeat and heartbeat[0] == trial._trial_id:
            last = heartbeat[1]
        else:
            last = trial.datetime_start.timestamp() if trial.datetime_start else now
        if now - last <= grace_s:
            continue
        try:
            if not storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL):
                continue
        except (RuntimeError, Exception):  # another worker failed it first
            continue
        failed.append(trial.number)
        frozen = storage.get_trial(trial._trial_id)
        if on_fail is not None:
            on_fail(frozen)
        retry_trial(study, frozen, spec.max_retries)
    return failed
