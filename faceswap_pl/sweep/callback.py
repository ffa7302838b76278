"""The Lightning callback a sweep trial trains with: reports evaluation metrics to Optuna and prunes.

``optuna.integration`` is not installed, so this is the small equivalent of its
PyTorchLightningPruningCallback. It reads what the run's
:class:`~faceswap_pl.callbacks.evaluation.EvaluationCallback` measured -- the objectives are its ``eval/*``
metrics -- after every evaluation (so pruning follows the evaluation interval), writes them to the trial's
result file (the last evaluation is the run's result) and, when the context allows it (single objective,
the first seed of a configuration), reports the first objective to Optuna and stops a pruned run. It runs
inside the trial subprocess; the context (storage, study, trial id, metrics, result file) comes from the
JSON file named by ``$FACESWAP_SWEEP_CONTEXT``.
"""

from __future__ import annotations

import json
import math
import os
import signal
from pathlib import Path

import optuna
from lightning.pytorch.callbacks import Callback

from faceswap_pl.sweep.study import load_study

CONTEXT_ENV = "FACESWAP_SWEEP_CONTEXT"
# test hook: a trial with this number kills itself (SIGKILL) at its first validation, unless it is a retry
KILL_ENV = "FACESWAP_SWEEP_KILL_TRIAL"


class OptunaReportCallback(Callback):
    """After each evaluation: ``trial.report(objective, iteration)``; stop training when ``trial.should_prune()``."""

    def __init__(self) -> None:
        path = os.environ.get(CONTEXT_ENV)
        if not path:
            raise RuntimeError(f"OptunaReportCallback runs inside `faceswap-pl sweep` trials only (${CONTEXT_ENV} "
                               f"is not set)")
        self.context = json.loads(Path(path).read_text())
        self.result_path = Path(self.context["result"])
        self.values: list[list[float]] = []  # [iteration, first objective] per evaluation
        self.final: dict[str, float] = {}    # every eval/* metric of the last evaluation
        self.pruned = False
        self._seen = 0
        self._trial = None

    def _optuna_trial(self):
        if self._trial is None:
            study, _ = load_study(self.context["study"], self.context["storage"])
            self._trial = optuna.trial.Trial(study, self.context["trial_id"])
        return self._trial

    def _write(self) -> None:
        tmp = self.result_path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"values": self.values, "pruned": self.pruned, "final": self.final}))
        tmp.replace(self.result_path)

    def _evaluations(self, trainer) -> list[dict[str, float]]:
        for callback in trainer.callbacks:
            if hasattr(callback, "history") and hasattr(callback, "selection_score"):  # EvaluationCallback
                return callback.history
        return []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        worker = self.context.get("worker_pid")
        if worker and os.getppid() != worker:  # the worker died: do not train on as an orphan
            os._exit(1)
        self._collect(trainer)

    def on_validation_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self._collect(trainer)

    def on_train_end(self, trainer, pl_module) -> None:
        self._collect(trainer)

    def _collect(self, trainer) -> None:
        """Take the evaluations made since the last call: record, write, report and maybe prune."""
        history = self._evaluations(trainer)
        if len(history) <= self._seen or not trainer.is_global_zero:
            return
        new, self._seen = history[self._seen:], len(history)
        metric = self.context["metric"].removeprefix("eval/")
        for entry in new:
            step = int(entry["iteration"])
            self.final = {f"eval/{k}": float(v) for k, v in entry.items() if k != "iteration"}
            self.final["iteration"] = step
            if metric in entry:
                if self.values and self.values[-1][0] == step:  # a second evaluation at the same iteration
                    self.values[-1][1] = float(entry[metric])
                else:
                    self.values.append([step, float(entry[metric])])
        self._write()
        kill = os.environ.get(KILL_ENV)
        if kill is not None and int(kill) == self.context["number"] and not self.context.get("retry_of_failed"):
            os.kill(os.getpid(), signal.SIGKILL)
        if not self.context.get("prune", True) or not self.values or not math.isfinite(self.values[-1][1]):
            return
        trial = self._optuna_trial()
        step, value = self.values[-1]
        trial.report(value, step)
        if trial.should_prune():
            self.pruned = True
            self._write()
            trainer.should_stop = True
