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

import os
from pathlib import Path
from typing import Any

from faceswap_pl.errors import FaceSwapError

MLFLOW_LOGGER = "lightning.pytorch.loggers.MLFlowLogger"


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` to ``path`` through a temporary file in the same folder and a rename."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial-{os.getpid()}")
    try:
        with open(partial, "wb") as handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def _checkpoint_io_class():
    from lightning.pytorch.plugins.io import TorchCheckpointIO

    class AtomicCheckpointIO(TorchCheckpointIO):
        """Lightning's checkpoint IO with :func:`atomic_torch_save` for local paths."""

        def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
            if storage_options is not None or "://" in str(path):
                return super().save_checkpoint(checkpoint, path, storage_options)
            atomic_torch_save(checkpoint, path)

    return AtomicCheckpointIO


def use_atomic_checkpoints(trainer) -> None:
    """Give the trainer's strategy the atomic writer unless it has a custom checkpoint IO."""
    from lightning.pytorch.plugins.io import TorchCheckpointIO

    io_class = _checkpoint_io_class()
    current = trainer.strategy.checkpoint_io
    if type(current) is TorchCheckpointIO:
        trainer.strategy.checkpoint_io = io_class()


def _logger_of(trainer_config) -> tuple[Any, dict]:
    logger = trainer_config.get("logger")
    if isinstance(logger, list):
        logger = next((item for item in logger if getattr(item, "class_path", None) == MLFLOW_LOGGER), None)
    if logger is None or isinstance(logger, bool) or getattr(logger, "class_path", None) != MLFLOW_LOGGER:
        return None, {}
    return logger, logger.init_args


def resolve_last(config) -> str | None:
    """For a `fit` config with ``ckpt_path: last``: set the newest ``last.ckpt`` and its MLflow run id.

    Returns a line saying what was resumed (None when ``ckpt_path`` is not ``last``). Without any
    ``last.ckpt`` the training starts from scratch, as Lightning does, and the line says so.
    """
    if config.get("ckpt_path") != "last":
        return None
    root = Path(config.trainer.get("default_root_dir") or ".").expanduser()
    logger, init_args = _logger_of(config.trainer)
    candidates: list[Path]
    if logger is not None:
        from faceswap_pl.tracking import _tracking_client

        name = init_args.get("experiment_name") or "lightning_logs"
        try:
            with _tracking_client(init_args.get("tracking_uri")) as (client, _):
                experiment = client.get_experiment_by_name(name)
        except FaceSwapError:  # no MLflow store yet: nothing was trained
            experiment = None
        if experiment is None:
            candidates = []
        else:
            candidates = list((root / experiment.experiment_id).glob("*/checkpoints/last.ckpt"))
    else:
        candidates = list(root.rglob("last.ckpt"))
    candidates = [p for p in candidates if p.is_file()]
    if not candidates:
        config.ckpt_path = None
        return (f"--ckpt_path last: no last.ckpt under {root} for this experiment yet; training starts from "
                f"the beginning")
    newest = max(candidates, key=lambda p: p.stat().st_mtime)
    config.ckpt_path = str(newest)
    if logger is not None:
        run_id = newest.parent.parent.name
        if init_args.get("run_id") not in (None, run_id):
            raise FaceSwapError(f"--ckpt_path last found {newest} of MLflow run {run_id}, but the config sets "
                                f"trainer.logger.init_args.run_id={init_args.get('run_id')}; drop one of the two.")
        init_args["run_id"] = run_id
        return f"resuming {newest} in MLflow run {run_id}"
    return f"resuming {newest}"


def absolute_tracking_uri(config) -> None:
    """Make the MLflow logger's tracking URI absolute against the current folder (``sqlite:///mlruns.db`` ->
    ``sqlite:////abs/mlruns.db``): the run's parameters then say where it lives, and MLflow, which caches one
    store per URI string in a process, never writes to the database of an earlier working folder."""
    from faceswap_pl.tracking import resolve_tracking_uri

    logger, init_args = _logger_of(config.trainer)
    if logger is not None and init_args.get("tracking_uri"):
        init_args["tracking_uri"] = resolve_tracking_uri(init_args["tracking_uri"])


def check_checkpoint_path(config) -> None:
    """``--ckpt_path FILE`` must exist and hold only weights: it is read once with ``weights_only=True`` (a
    pickle that would run code is refused with the reason) before Lightning loads it, also weights-only."""
    from faceswap_pl.models.checkpoint import CheckpointNotFoundError, _torch_load

    if "weights_only" in config and config.get("weights_only") is None:
        config.weights_only = True
    path = config.get("ckpt_path")
    if not path or path in ("last", "best", "hpc", "registry") or "://" in str(path):
        return
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointNotFoundError(f"--ckpt_path {path} does not exist; pass a .ckpt written by `faceswap-pl "
                                      f"fit` (outputs/<experiment>/<run>/checkpoints/), or `last` to resume.")
    _torch_load(path)


def cli_class():
    """LightningCLI with ``--ckpt_path last`` resolution and atomic checkpoint writes."""
    from lightning.pytorch.cli import LightningCLI

    class FaceSwapLightningCLI(LightningCLI):
        def _parse_ckpt_path(self) -> None:  # runs right after parsing, before Lightning reads the checkpoint
            subcommand = self.config.get("subcommand")
            if subcommand:
                config = self.config[subcommand]
                absolute_tracking_uri(config)
                if subcommand == "fit":
                    message = resolve_last(config)
                    if message:
                        print(message, flush=True)
                check_checkpoint_path(config)
            super()._parse_ckpt_path()

        def before_fit(self) -> None:
            use_atomic_checkpoints(self.trainer)

    return FaceSwapLightningCLI
