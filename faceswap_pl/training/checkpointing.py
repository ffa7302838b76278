"""Surviving pre-emption: atomic checkpoint files and `fit --ckpt_path last` that continues the killed run.

* :class:`AtomicCheckpointIO` writes every checkpoint to a temporary file in the destination folder,
  flushes it to disk and renames it over the old one, so a kill during the write leaves the previous
  ``last.ckpt`` whole (Lightning's own writer goes through a temporary file in the system temp folder,
  which is a copy, not a rename, when that is another file system).
* :func:`resolve_last` turns ``--ckpt_path last`` into the newest ``last.ckpt`` of the experiment under
  ``trainer.default_root_dir`` and, with the MLflow logger, into that run's id, so the resumed training
  logs into the same MLflow run (metrics continue at the restored iteration) instead of a new one.

What resumes exactly: weights, both optimizers, the EMA copy, the iteration counter and the learning-
rate schedules (all in the checkpoint). The data stream does not resume mid-epoch: training continues
from the next epoch's pairs, freshly drawn from the shards with the epoch's seed, so at most one epoch of
sampling order is not replayed (for identity-grouped pair sampling that only changes which random pairs
are seen, not how often each image is).
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from faceswap_pl.errors import CheckpointNotFoundError, FaceSwapError, UnsafeCheckpointError
from faceswap_pl.files import atomic_write
from faceswap_pl.models.importers.checkpoint import read_torch_file
from faceswap_pl.runs.store import flatten_params, resolve_tracking_uri, tracking_client

MLFLOW_LOGGER = "lightning.pytorch.loggers.MLFlowLogger"


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint IO with :func:`~faceswap_pl.files.atomic_write` for local paths."""

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        if storage_options is not None or "://" in str(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        atomic_write(path, functools.partial(torch.save, checkpoint))


def use_atomic_checkpoints(trainer) -> None:
    """Give the trainer's strategy the atomic writer unless it has a custom checkpoint IO."""
    if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:
        trainer.strategy.checkpoint_io = AtomicCheckpointIO()


def _logger_of(trainer_config) -> tuple[Any, dict]:
    logger = trainer_config.get("logger")
    if isinstance(logger, list):
        logger = next((item for item in logger if getattr(item, "class_path", None) == MLFLOW_LOGGER), None)
    if logger is None or isinstance(logger, bool) or getattr(logger, "class_path", None) != MLFLOW_LOGGER:
        return None, {}
    return logger, logger.init_args


#: MLflow run tag: a hash of the run's resolved config, so `--ckpt_path last` resumes the run of the same job
FINGERPRINT_TAG = "faceswap.config_fingerprint"
_NOT_FINGERPRINTED = ("ckpt_path", "config", "weights_only", "trainer.logger.init_args.run_id",
                      "trainer.logger.init_args.run_name")


def _whole_floats_as_ints(value):
    """``0.0`` -> ``0`` throughout a config: jsonargparse reads ``--trainer.limit_val_batches=0`` (type
    ``int | float``) as ``0.0`` in one process and ``0`` in another (typing caches unions regardless of the order
    of their members), so a fingerprint must not tell the two apart."""
    if isinstance(value, dict):
        return {k: _whole_floats_as_ints(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_whole_floats_as_ints(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _fingerprinted(config: dict) -> dict[str, str]:
    return {k: v for k, v in flatten_params(_whole_floats_as_ints(config)).items()
            if not k.startswith(_NOT_FINGERPRINTED)}


def config_fingerprint(config: dict) -> str:
    """Hash of a resolved fit config without what differs between a run and its resumption."""
    flat = _fingerprinted(config)
    return hashlib.sha256(json.dumps(flat, sort_keys=True).encode()).hexdigest()[:20]


def _differing_options(config: dict, params: dict[str, str], shown: int = 8) -> str:
    """The options whose value in ``config`` differs from a run's logged params, for a message."""
    flat = {k: v for k, v in flatten_params(config).items() if not k.startswith(_NOT_FINGERPRINTED)}
    sections = {k.split(".", 1)[0] + "." for k in flat if "." in k}  # hyperparameters logged by the model are not
    logged = {k for k in params if k.startswith(tuple(sections)) and not k.startswith(_NOT_FINGERPRINTED)}
    keys = sorted(k for k in set(flat) | logged if flat.get(k) != params.get(k))
    if not keys:
        return "no logged option (its fingerprint was written by another version of faceswap_pl)"
    listed = ", ".join(f"{k} ({params.get(k, 'unset')!r} there, {flat.get(k, 'unset')!r} here)" for k in keys[:shown])
    return listed + (f" and {len(keys) - shown} more" if len(keys) > shown else "")


def _fresh(config, reason: str) -> str:
    config.ckpt_path = None
    return f"--ckpt_path last: {reason}; training starts from the beginning"


def resolve_last(config) -> str | None:
    """For a `fit` config with ``ckpt_path: last``: the ``last.ckpt`` to resume and, with MLflow, its run.

    With the MLflow logger the run is the one named by ``trainer.logger.init_args.run_id`` if set, else the
    newest run of the experiment whose config fingerprint (tag ``faceswap.config_fingerprint``) equals this
    config's — another job of the same experiment (another backbone, another dataset) is never picked up.
    Without MLflow: the newest ``last.ckpt`` under ``trainer.default_root_dir``. Returns a line saying what
    happens (None when ``ckpt_path`` is not ``last``); with nothing to resume, training starts from scratch.
    """
    if config.get("ckpt_path") != "last":
        return None
    root = Path(config.trainer.get("default_root_dir") or ".").expanduser()
    logger, init_args = _logger_of(config.trainer)
    if logger is None:
        candidates = [p for p in root.rglob("last.ckpt") if p.is_file()]
        if not candidates:
            return _fresh(config, f"no last.ckpt under {root} yet")
        config.ckpt_path = str(max(candidates, key=lambda p: p.stat().st_mtime))
        return f"resuming {config.ckpt_path}"
    name = init_args.get("experiment_name") or "lightning_logs"
    try:
        with tracking_client(init_args.get("tracking_uri")) as (client, _):
            experiment = client.get_experiment_by_name(name)
            if experiment is None:
                return _fresh(config, f"MLflow experiment {name!r} has no runs yet")
            wanted = init_args.get("run_id")
            if wanted:
                path = root / experiment.experiment_id / wanted / "checkpoints" / "last.ckpt"
                if not path.is_file():
                    raise FaceSwapError(f"--ckpt_path last with run_id {wanted}: {path} does not exist; check the "
                                        f"run id and trainer.default_root_dir.")
                config.ckpt_path = str(path)
                return f"resuming {path} in MLflow run {wanted}"
            fingerprint = config_fingerprint(config.as_dict())
            runs = client.search_runs([experiment.experiment_id],
                                      f"tags.`{FINGERPRINT_TAG}` = '{fingerprint}'", max_results=1000)
        candidates = [root / experiment.experiment_id / r.info.run_id / "checkpoints" / "last.ckpt" for r in runs]
        candidates = [p for p in candidates if p.is_file()]
        if not candidates:
            others = sorted((p for p in (root / experiment.experiment_id).glob("*/checkpoints/last.ckpt")),
                            key=lambda p: p.stat().st_mtime, reverse=True)
            hint = ""
            if others:
                newest = others[0].parent.parent.name
                try:
                    differ = _differing_options(config.as_dict(), client.get_run(newest).data.params)
                except Exception:  # a folder whose run was deleted from the store
                    differ = "options that cannot be read (the run is not in the store)"
                hint = (f" (runs of experiment {name!r} with another config have one: "
                        f"{', '.join(p.parent.parent.name for p in others[:5])}; the newest, {newest}, differs in "
                        f"{differ}; resume one with --trainer.logger.init_args.run_id=ID)")
            return _fresh(config, f"no run of experiment {name!r} with this config has a last.ckpt{hint}")
    except FaceSwapError as error:
        if "does not exist; train first" in str(error):  # no MLflow store yet: nothing was trained
            return _fresh(config, "no MLflow store yet")
        raise
    newest = max(candidates, key=lambda p: p.stat().st_mtime)
    config.ckpt_path = str(newest)
    init_args["run_id"] = newest.parent.parent.name
    return f"resuming {newest} in MLflow run {init_args['run_id']}"


def absolute_tracking_uri(config) -> None:
    """Make the MLflow logger's tracking URI absolute against the current folder (``sqlite:///mlruns.db`` ->
    ``sqlite:////abs/mlruns.db``): the run's parameters then say where it lives, and MLflow, which caches one
    store per URI string in a process, never writes to the database of an earlier working folder."""
    logger, init_args = _logger_of(config.trainer)
    if logger is not None and init_args.get("tracking_uri"):
        init_args["tracking_uri"] = resolve_tracking_uri(init_args["tracking_uri"])


def check_checkpoint_path(config) -> None:
    """``--ckpt_path FILE`` must exist and hold only what ``torch.load(weights_only=True)`` allows: its pickle is
    scanned (no tensor is read) before Lightning loads it, and a file that asks for anything else — code to run,
    foreign classes — is refused with the names it asks for."""
    if "weights_only" in config and config.get("weights_only") is None:
        config.weights_only = True
    path = config.get("ckpt_path")
    if not path or path in ("last", "best", "hpc", "registry") or "://" in str(path):
        return
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointNotFoundError(f"--ckpt_path {path} does not exist; pass a .ckpt written by `faceswap-pl "
                                      f"fit` (outputs/<experiment>/<run>/checkpoints/), or `last` to resume.")
    try:
        unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    except Exception:  # not a zip checkpoint, or unreadable: the checked loader says which, in one sentence
        read_torch_file(path)
        return
    if unsafe:
        raise UnsafeCheckpointError(f"Refused to load '{path}' for safety: its pickle asks for {', '.join(unsafe)}, "
                                    f"which torch.load(weights_only=True) does not allow; pass a checkpoint written by "
                                    f"`faceswap-pl fit`.")
