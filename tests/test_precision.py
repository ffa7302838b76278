"""Precision paths: GHOST's default (bf16-mixed with the memory options) trains, and fp16 mixed precision steps
through a real loss scaler that skips an overflowing step.

Lightning turns ``precision=16-mixed`` on a CPU into bf16-mixed, so the CPU tests give the trainer the fp16
plugin with a CPU ``GradScaler`` themselves: the same plugin Lightning builds for ``16-mixed`` on a GPU. The
``gpu``-marked tests run the plain ``precision`` flags on a CUDA device (``benchmarks/gpu.sh`` runs them).
"""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch
from lightning.pytorch.plugins.precision import MixedPrecision

from faceswap_pl.data.synthetic import SyntheticPairDataModule
from faceswap_pl.training.module import FaceSwapModule
from faceswap_pl.training.optim import LeanAdam

TINY = dict(backbone="unet", num_aad_blocks=2, image_size=64, width=0.125, d_ndf=8, d_layers=3, d_scales=2)
# experiments/ghost.yaml's training options: no clipping, the step inside the backward, recomputed AAD layers
GHOST_OPTIONS = dict(grad_clip=None, step_in_backward=True, recompute_levels=3)


class Watch(L.Callback):
    """Per iteration: the generator's output dtype, whether G's parameters changed, the loss and the scale."""

    def __init__(self) -> None:
        self.rows, self.dtypes = [], []

    def on_fit_start(self, trainer, pl_module) -> None:
        pl_module.generator.register_forward_hook(lambda module, args, out: self.dtypes.append(out[0].dtype))

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.before = [p.detach().clone() for p in pl_module.generator.parameters()]

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        changed = any(not torch.equal(a, b) for a, b in zip(self.before, pl_module.generator.parameters()))
        scaler = getattr(trainer.precision_plugin, "scaler", None)
        self.rows.append({"changed": changed, "loss_g": float(trainer.callback_metrics["train/loss_g"]),
                          "scale": scaler.get_scale() if scaler is not None else None})


def _fit(tmp_path, iterations: int, accelerator: str = "cpu", **trainer_options):
    torch.manual_seed(0)
    module = FaceSwapModule(**TINY, **GHOST_OPTIONS, fused_adam=trainer_options.pop("fused_adam", False),
                            max_iterations=iterations)
    watch = Watch()
    steps = []
    step_parameter = LeanAdam.step_parameter

    def counted(self, param):
        steps.append(1)
        return step_parameter(self, param)

    LeanAdam.step_parameter = counted
    try:
        L.Trainer(accelerator=accelerator, devices=1, max_epochs=100, logger=False, enable_checkpointing=False,
                  enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0, callbacks=[watch],
                  default_root_dir=tmp_path, **trainer_options).fit(
            module, SyntheticPairDataModule(image_size=64, batch_size=4, train_pairs=32, p_same=0.5))
    finally:
        LeanAdam.step_parameter = step_parameter
    assert int(module.iteration) == iterations
    return module, watch, len(steps)


@pytest.mark.parametrize("fused_adam", [False, True], ids=["single_tensor", "fused"])
def test_ghost_default_bf16_mixed_trains_with_the_step_inside_the_backward(tmp_path, fused_adam):
    _, fp32, _ = _fit(tmp_path, 1, precision="32-true", fused_adam=fused_adam)
    module, watch, in_backward = _fit(tmp_path, 3, precision="bf16-mixed", fused_adam=fused_adam)
    assert set(watch.dtypes) == {torch.bfloat16}  # the generator ran under bf16 autocast
    assert next(module.generator.parameters()).dtype == torch.float32  # fp32 master weights
    parameters = sum(1 for p in module.generator.parameters() if p.requires_grad)
    assert in_backward == 3 * parameters  # every G parameter stepped inside the backward, each iteration
    assert all(row["changed"] and math.isfinite(row["loss_g"]) for row in watch.rows)
    # the same first batch and weights as the fp32 run: the loss differs by bf16 rounding only
    assert watch.rows[0]["loss_g"] == pytest.approx(fp32.rows[0]["loss_g"], rel=0.02)


def _fp16_plugin(init_scale: float) -> MixedPrecision:
    return MixedPrecision("16-mixed", "cpu", torch.amp.GradScaler("cpu", init_scale=init_scale))


def test_fp16_mixed_steps_through_a_real_loss_scaler(tmp_path):
    module, watch, in_backward = _fit(tmp_path, 2, plugins=[_fp16_plugin(2.0 ** 10)])
    assert set(watch.dtypes) == {torch.float16}
    assert in_backward == 0  # the update waits for the scaler's unscale and inf check
    assert all(row["changed"] and row["scale"] == 2.0 ** 10 for row in watch.rows)
    opt_g, opt_d = (getattr(o, "optimizer", o) for o in module.trainer.optimizers)
    assert all(float(opt.state[p]["step"]) == 2 for opt, net in ((opt_g, module.generator),
                                                                 (opt_d, module.discriminator))
               for p in net.parameters())


def test_fp16_mixed_skips_an_overflowing_step_and_backs_off(tmp_path):
    # a scale of 2^40 overflows fp16 gradients: the scaler skips G's and D's updates and halves the scale
    # after each, and the run goes on
    module, watch, _ = _fit(tmp_path, 2, plugins=[_fp16_plugin(2.0 ** 40)])
    assert [row["changed"] for row in watch.rows] == [False, False]
    assert [row["scale"] for row in watch.rows] == [2.0 ** 38, 2.0 ** 36]
    opt_g = getattr(module.trainer.optimizers[0], "optimizer", module.trainer.optimizers[0])
    assert all(float(opt_g.state[p]["step"]) == 0 for p in module.generator.parameters())
    assert int(module.nonfinite_total) == 0  # the loss was finite: the scaler, not the guard, skipped


@pytest.mark.parametrize("precision", ["bf16-mixed", "16-mixed"])
@pytest.mark.parametrize("fused_adam", [False, True], ids=["single_tensor", "fused"])
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_mixed_precision_trains_on_a_gpu(tmp_path, precision, fused_adam):
    module, watch, in_backward = _fit(tmp_path, 3, accelerator="cuda", precision=precision, fused_adam=fused_adam)
    assert set(watch.dtypes) == {torch.bfloat16 if precision == "bf16-mixed" else torch.float16}
    assert all(math.isfinite(row["loss_g"]) for row in watch.rows)
    assert any(row["changed"] for row in watch.rows)
    assert (in_backward > 0) == (precision == "bf16-mixed")  # fp16: the scaler steps after the backward
