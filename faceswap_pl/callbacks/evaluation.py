"""Evaluation on the fixed pairs during training: every metric, a sample grid, a selection score.

``EvaluationCallback`` swaps the datamodule's fixed evaluation pairs
(:meth:`faceswap_pl.data.FaceSwapDataModule.eval_pairs`) with the current generator (its EMA copy
when there is one) and measures them with :class:`faceswap_pl.metrics.FaceEvaluator`:

- at the start of training (iteration 0, the "before" figures), every ``every_n_iterations``
  generator iterations, at the end of training (``at_end``: the figures of the final weights, which
  sweeps rank by) and at the end of each validation run;
- identity retrieval searches a gallery of every identity of the evaluation split (sources and targets,
  FaceShifter's protocol; see :mod:`faceswap_pl.data.evalpairs`), and its size and chance levels are
  logged next to it (``eval/gallery_identities``, ``eval/id_top1_chance``, ``eval/id_top5_chance``);
- under DDP each rank swaps every ``world_size``-th pair and the metrics are reduced across ranks,
  so every rank logs the same numbers;
- metrics are logged as ``eval/<name>`` against the generator iteration, and put where
  ``ModelCheckpoint(monitor="eval/...")`` finds them at validation end;
- ``eval/select`` ranks checkpoints: ``id_top1`` when the expression error is within
  ``expression_bound`` (else ``id_top1 - 1``, below every run that keeps the bound); without a bound
  it is ``id_top1``;
- a grid of the first ``grid_pairs`` pairs (source | target | swap) is logged as an image per
  evaluation: the MLflow artifact ``eval_grid/step_<iteration>.png`` (``mlflow.log_image`` with a
  step), or a PNG under ``<default_root_dir>/eval_grid/`` with other loggers.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from faceswap_pl.errors import FaceSwapError
from faceswap_pl.metrics import FaceEvaluator
from faceswap_pl.visual import image_grid, write_png


class EvaluationCallback(L.Callback):
    """Evaluate swaps of the fixed evaluation pairs (see the module docstring).

    Args:
        every_n_iterations: also evaluate every N generator iterations (None: only at validation and the ends).
        at_start: evaluate once before the first training step (iteration 0).
        at_end: evaluate once when training ends, unless the last evaluation was at the final iteration.
        batch_size: pairs swapped per forward pass.
        grid_pairs: pairs shown in the logged grid (0: no grid).
        recognizer: evaluation identity network (must differ from the training identity encoder).
        expression_bound: largest expression error a selected checkpoint may have (``eval/select``).
    """

    def __init__(self, every_n_iterations: int | None = None, at_start: bool = True, batch_size: int = 16,
                 grid_pairs: int = 6, recognizer: str = "facenet", expression_bound: float | None = None,
                 at_end: bool = True) -> None:
        if every_n_iterations is not None and every_n_iterations < 1:
            raise FaceSwapError(f"EvaluationCallback every_n_iterations={every_n_iterations} must be at least 1 "
                                f"(or null to evaluate only at validation).")
        if batch_size < 1 or grid_pairs < 0:
            raise FaceSwapError("EvaluationCallback needs batch_size >= 1 and grid_pairs >= 0.")
        self.every_n_iterations = every_n_iterations
        self.at_start = at_start
        self.at_end = at_end
        self.batch_size = batch_size
        self.grid_pairs = grid_pairs
        self.recognizer = recognizer
        self.expression_bound = expression_bound
        self.enabled = True
        self._evaluator = None
        self._gallery_of = None  # the EvalPairs whose gallery the evaluator holds
        self._last_iteration: int | None = None
        self.history: list[dict[str, float]] = []  # every evaluation of this process, with its iteration

    # -- set-up -------------------------------------------------------------------------------
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        training_encoder = getattr(pl_module, "hparams", {}).get("identity_encoder")
        if training_encoder == self.recognizer:
            raise FaceSwapError(f"The evaluation recognizer {self.recognizer!r} is also the training identity "
                                f"encoder; identity retrieval would grade the swaps with the network they were "
                                f"trained against. Choose another, e.g. recognizer: facenet with sface training.")
        self.enabled = hasattr(trainer.datamodule, "eval_pairs")
        if not self.enabled:  # e.g. a replayed batch file: nothing to evaluate on, say so once
            rank_zero_warn(f"EvaluationCallback: {type(trainer.datamodule).__name__} has no eval_pairs(), so no eval/* "
                           f"metrics are logged; train on shards (faceswap_pl.data.FaceSwapDataModule) to get them.")

    def evaluator(self, device: torch.device):
        if self._evaluator is None:
            self._evaluator = FaceEvaluator(recognizer=self.recognizer)
        return self._evaluator.to(device)

    # -- the evaluation -----------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, float]:
        """Swap this rank's share of the pairs, reduce the metrics over ranks, return them (all ranks)."""
        if not self.enabled:
            return {}
        pairs = trainer.datamodule.eval_pairs()
        rank, world = trainer.global_rank, trainer.world_size
        if len(pairs) < world:
            raise FaceSwapError(f"{len(pairs)} evaluation pairs cannot be shared by {world} processes; "
                                f"raise data.eval_pairs to at least {world}.")
        evaluator = self.evaluator(pl_module.device)
        if self._gallery_of is not pairs:  # the gallery's embeddings are computed once per set of pairs
            evaluator.set_gallery(pairs.gallery, pairs.gallery_identity)
            self._gallery_of = pairs
        evaluator.reset()
        was_training = pl_module.training
        pl_module.eval()
        mine = torch.arange(rank, len(pairs), world)
        shown = mine[:self.grid_pairs]  # the grid shows rank 0's first pairs, reusing their swaps
        grid_swaps = []
        try:
            for start in range(0, len(mine), self.batch_size):
                batch = _select(pairs, mine[start:start + self.batch_size], pl_module.device)
                swap = pl_module(batch["target"], pl_module.source_embedding(batch)).float()
                evaluator.update(swap, batch["source"], batch["target"], batch["source_identity"])
                if start < len(shown):
                    grid_swaps.append(swap[:len(shown) - start].cpu())
            metrics = evaluator.compute()
        finally:
            pl_module.train(was_training)
        metrics["select"] = self.selection_score(metrics)
        iteration = int(getattr(pl_module, "iteration", trainer.global_step))
        self._last_iteration = iteration
        self.history.append({"iteration": float(iteration), **metrics})
        self._log(trainer, metrics, iteration)
        if len(shown) and trainer.is_global_zero:
            grid = image_grid([pairs.source[shown], pairs.target[shown], torch.cat(grid_swaps)],
                              titles=["source", "target", "swap"])
            self._log_grid(trainer, grid, iteration)
        return metrics

    def selection_score(self, metrics: dict[str, float]) -> float:
        top1 = metrics["id_top1"]
        if self.expression_bound is None or metrics["expression"] <= self.expression_bound:
            return top1
        return top1 - 1.0

    # -- logging ------------------------------------------------------------------------------
    def _log(self, trainer: L.Trainer, metrics: dict[str, float], iteration: int) -> None:
        named = {f"eval/{name}": float(value) for name, value in metrics.items()}
        for name, value in named.items():  # where ModelCheckpoint / EarlyStopping look
            trainer.callback_metrics[name] = torch.tensor(value)
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.log_metrics(named, step=iteration)
            rank_zero_info(f"Evaluation at iteration {iteration}: "
                           + ", ".join(f"{k} {v:.3f}" for k, v in metrics.items()))

    def _log_grid(self, trainer: L.Trainer, grid, iteration: int) -> None:
        logged = False
        for logger in trainer.loggers:
            if type(logger).__name__ == "MLFlowLogger":
                logger.experiment.log_image(logger.run_id, grid, key="eval_grid", step=iteration)
                logged = True
        if not logged:
            write_png(f"{trainer.default_root_dir}/eval_grid/step_{iteration:07d}.png", grid)

    # -- hooks --------------------------------------------------------------------------------
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.at_start and int(getattr(pl_module, "iteration", trainer.global_step)) == 0:
            self.evaluate(trainer, pl_module)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if self.every_n_iterations is None:
            return
        iteration = int(getattr(pl_module, "iteration", trainer.global_step))
        if iteration % self.every_n_iterations == 0 and iteration != self._last_iteration:
            self.evaluate(trainer, pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        iteration = int(getattr(pl_module, "iteration", trainer.global_step))
        if self.at_end and iteration != self._last_iteration:
            self.evaluate(trainer, pl_module)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self.evaluate(trainer, pl_module)


def _select(pairs, index: torch.Tensor, device: torch.device) -> dict[str, torch.Tensor]:
    """Rows ``index`` of the evaluation pairs as a batch on ``device``."""
    batch = {"source": pairs.source[index], "target": pairs.target[index],
             "source_identity": pairs.source_identity[index],
             "same_identity": torch.zeros(len(index), dtype=torch.bool)}
    if pairs.source_embedding is not None:
        batch["source_embedding"] = pairs.source_embedding[index]
    return {name: value.to(device) for name, value in batch.items()}
