"""Save the resolved run configuration where the run's logger keeps its artifacts."""

from __future__ import annotations

from pathlib import Path

from lightning.pytorch.cli import SaveConfigCallback
from mlflow.entities import Param

from faceswap_pl.runs.store import flatten_params
from faceswap_pl.training.checkpointing import FINGERPRINT_TAG, config_fingerprint


class LogConfigCallback(SaveConfigCallback):
    """LightningCLI's config saver that also works with MLflow.

    With an MLflow logger the resolved YAML becomes the run artifact ``config.yaml`` and every option a
    run param (dotted keys such as ``trainer.default_root_dir``, ``data.init_args.batch_size``); with a logger
    that has a log directory (CSV, TensorBoard) it is written there as ``config.yaml``; otherwise to
    ``trainer.default_root_dir``. Only rank 0 writes.
    """

    def setup(self, trainer, pl_module, stage: str) -> None:
        if self.already_saved:
            return
        logger = trainer.logger
        mlflow = logger is not None and type(logger).__name__ == "MLFlowLogger"
        # trainer.log_dir broadcasts under DDP: every rank must evaluate it, not only rank 0
        folder = None if mlflow else Path(trainer.log_dir or trainer.default_root_dir)
        if trainer.is_global_zero:
            text = self.parser.dump(self.config, skip_none=False)
            if mlflow:
                logger.experiment.log_text(logger.run_id, text, "config.yaml")
                log_config_params(logger.experiment, logger.run_id, self.config.as_dict())
                logger.experiment.set_tag(logger.run_id, FINGERPRINT_TAG, config_fingerprint(self.config.as_dict()))
            else:
                folder.mkdir(parents=True, exist_ok=True)
                (folder / self.config_filename).write_text(text)
            self.already_saved = True
        self.already_saved = trainer.strategy.broadcast(self.already_saved)


def log_config_params(client, run_id: str, config: dict) -> None:
    """Log a resolved config as flattened MLflow params, leaving keys the run already has (params never change)."""
    existing = client.get_run(run_id).data.params
    params = [Param(k, v) for k, v in flatten_params(config).items() if k not in existing]
    for start in range(0, len(params), 100):  # MLflow takes at most 100 params per call
        client.log_batch(run_id, params=params[start:start + 100])
