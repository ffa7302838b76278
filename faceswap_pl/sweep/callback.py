"""The Lightning callback a sweep trial trains with: reports validation metrics to Optuna and prunes.

``optuna.integration`` is not installed, so this is the small equivalent of its
PyTorchLightningPruningCallback. It runs inside the trial subprocess; the context (storage, study,
trial id, metric, result file) comes from the JSON file named by ``$FACESWAP_SWEEP_CONTEXT``.
"""

from __future__ import annotations

import json
import math
import os
import signal
from pathlib import Path

from lightning.pytorch.callbacks import Callback

CONTEXT_ENV = "FACESWAP_SWEEP_CONTEXT"
# test hook: a trial with this number kills itself (SIGKILL) at its first validation, unless it is a retry
KILL_ENV = "FACESWAP_SWEEP_KILL_TRIAL"


class OptunaReportCallback(Callback):
    """After each validation: ``trial.report(metric, iteration)``; stop training when ``trial.should_prune()``."""

    def __init__(self) -> None:
        path = os.environ.get(CONTEXT_ENV)
        if not path:
            raise RuntimeError(f"OptunaReportCallback runs inside `faceswap-pl sweep` trials only (${CONTEXT_ENV} "
                               f"is not set)")
        self.context = json.loads(Path(path).read_text())
        self.result_path = Path(self.context["result"])
        self.values: list[list[float]] = []
        self.pruned = False
        self._trial = None

    def _optuna_trial(self):
        if self._trial is None:
            import optuna

            from faceswap_pl.sweep.study import load_study

            study, _ = load_study(self.context["study"], self.context["storage"])
            self._trial = optuna.trial.Trial(study, self.context["trial_id"])
        return self._trial

    def _write(self) -> None:
        tmp = self.result_path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"values": self.values, "pruned": self.pruned}))
        tmp.replace(self.result_path)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        worker = self.context.get("worker_pid")
        if worker and os.getppid() != worker:  # the worker died: do not train on as an orphan
            os._exit(1)

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        metric = self.context["metric"]
        value = trainer.callback_metrics.get(metric)
        if value is None:
            return
        value = float(value)
        step = int(getattr(pl_module, "iteration", trainer.global_step))
        if self.values and self.values[-1][0] == step:  # a second validation at the same iteration
            self.values[-1][1] = value
        else:
            self.values.append([step, value])
        self._write()
        kill = os.environ.get(KILL_ENV)
        if kill is not None and int(kill) == self.context["number"] and not self.context.get("retry_of_failed"):
            os.kill(os.getpid(), signal.SIGKILL)
        if not math.isfinite(value):
            return
        trial = self._optuna_trial()
        trial.report(value, step)
        if trial.should_prune():
            self.pruned = True
            self._write()
            trainer.should_stop = True
