"""FaceSwapModule: a few real iterations on synthetic tensors, checkpoints, guards and options."""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch

from faceswap_pl.data.synthetic import SyntheticPairDataModule
from faceswap_pl.errors import ModelOptionError
from faceswap_pl.training.module import FaceSwapModule, TrainingDivergedError

TINY = dict(backbone="unet", num_aad_blocks=1, image_size=64, width=0.125, d_ndf=8, d_layers=3, d_scales=2)


def _trainer(tmp_path, iterations, **kwargs):
    kwargs.setdefault("precision", "32-true")
    return L.Trainer(accelerator="cpu", devices=1, max_epochs=100, logger=False, enable_checkpointing=False,
                     enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                     default_root_dir=tmp_path, **kwargs)


def _data(batch_size=4):
    return SyntheticPairDataModule(image_size=64, batch_size=batch_size, train_pairs=32, p_same=0.5)


def test_iterations_count_independently_of_global_step(tmp_path):
    module = FaceSwapModule(**TINY, max_iterations=3)
    trainer = _trainer(tmp_path, 3)
    trainer.fit(module, _data())
    assert int(module.iteration) == 3
    assert trainer.global_step == 6  # one G and one D optimizer step per iteration
    for name in ("adv", "id", "att", "rec", "loss_g", "loss_d"):
        assert math.isfinite(float(trainer.callback_metrics[f"train/{name}"])), name


def test_eye_loss_term_is_logged_when_weighted(tmp_path):
    module = FaceSwapModule(**TINY, w_eye=100.0, eye_model="mediapipe_iris", max_iterations=1)
    trainer = _trainer(tmp_path, 1)
    trainer.fit(module, _data())
    assert float(trainer.callback_metrics["train/eye"]) >= 0.0


@pytest.mark.parametrize("options", [{}, {"split_backward": True}, {"step_in_backward": False, "recompute_levels": 0}],
                         ids=["defaults", "split_backward", "plain"])
def test_the_generator_phase_leaves_the_discriminator_untouched(tmp_path, options):
    # real iterations: D's weights, gradients and optimizer state when its phase begins are what they were
    # when the iteration began, while G has stepped; and D's own phase does change D
    module = FaceSwapModule(**TINY, max_iterations=2, **options)

    def snapshot(trainer) -> dict:
        opt_d = getattr(trainer.optimizers[1], "optimizer", trainer.optimizers[1])
        return {"D": {k: v.clone() for k, v in module.discriminator.state_dict().items()},
                "G": {k: v.clone() for k, v in module.generator.state_dict().items()},
                "grads": [p.grad for p in module.discriminator.parameters()],
                "adam": [{k: v.clone() for k, v in opt_d.state[p].items()} for p in module.discriminator.parameters()]}

    seen = []

    class AtIterationStart(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            seen.append({"start": snapshot(trainer)})

    d_phase = module._discriminator_backward

    def at_d_phase(*args, **kwargs):
        seen[-1]["d_phase"] = snapshot(module.trainer)
        return d_phase(*args, **kwargs)

    module._discriminator_backward = at_d_phase
    _trainer(tmp_path, 2, callbacks=[AtIterationStart()]).fit(module, _data())
    assert len(seen) == 2 and all("d_phase" in it for it in seen)

    def equal(a: dict, b: dict) -> bool:
        return all(torch.equal(a[k], b[k]) for k in b)

    for it in seen:
        start, d_phase_start = it["start"], it["d_phase"]
        assert equal(d_phase_start["D"], start["D"])
        assert all(g is None for g in d_phase_start["grads"])
        assert all(equal(a, b) for a, b in zip(d_phase_start["adam"], start["adam"], strict=True))
        assert not equal(d_phase_start["G"], start["G"])  # the G phase did step
    assert not equal(seen[1]["start"]["D"], seen[0]["start"]["D"])  # the D phase did step


def test_frozen_networks_are_not_in_the_checkpoint_and_round_trip(tmp_path):
    module = FaceSwapModule(**TINY, max_iterations=2)
    trainer = _trainer(tmp_path, 2)
    trainer.fit(module, _data())
    path = tmp_path / "m.ckpt"
    trainer.save_checkpoint(path)
    state = torch.load(path, weights_only=True)["state_dict"]
    assert all(k.split(".")[0] in {"generator", "discriminator", "iteration", "adv_running_mean", "nonfinite_total"}
               for k in state)
    loaded = FaceSwapModule.load_from_checkpoint(path, weights_only=True)
    assert int(loaded.iteration) == 2
    target, embedding = torch.rand(2, 3, 64, 64) * 2 - 1, torch.nn.functional.normalize(torch.randn(2, 128), dim=-1)
    module.eval(), loaded.eval()
    with torch.no_grad():
        assert torch.equal(module(target, embedding), loaded(target, embedding))


def test_nonfinite_guard_skips_steps_and_stops_with_a_message(tmp_path):
    module = FaceSwapModule(**TINY, max_nonfinite=2, max_iterations=10)
    with torch.no_grad():  # a NaN weight makes every loss NaN
        next(module.generator.generator.parameters()).fill_(float("nan"))
    before = {k: v.clone() for k, v in module.discriminator.state_dict().items()}
    trainer = _trainer(tmp_path, 10)
    with pytest.raises(TrainingDivergedError, match="2 non-finite losses in a row"):
        trainer.fit(module, _data())
    assert int(module.nonfinite_total) == 2
    after = module.discriminator.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # skipped steps change nothing


def test_discriminator_skip_rule_persists_across_epochs(tmp_path):
    module = FaceSwapModule(**TINY, d_skip_threshold=0.0, max_iterations=3)  # running mean >= 0 always: skip
    before = {k: v.clone() for k, v in module.discriminator.state_dict().items()}
    trainer = _trainer(tmp_path, 3, limit_train_batches=1)  # one batch per epoch: 3 epochs
    trainer.fit(module, _data())
    assert trainer.current_epoch >= 2 and float(trainer.callback_metrics["train/d_skipped"]) == 1.0
    assert trainer.global_step == 3  # generator steps only
    assert all(torch.equal(before[k], v) for k, v in module.discriminator.state_dict().items())
    assert float(module.adv_running_mean) > 0.0  # accumulated over all epochs, never reset


def test_ema_generator_is_used_for_inference(tmp_path):
    module = FaceSwapModule(**TINY, ema_decay=0.5, max_iterations=2)
    _trainer(tmp_path, 2).fit(module, _data())
    live = dict(module.generator.named_parameters())
    ema = dict(module.generator_ema.named_parameters())
    assert any(not torch.equal(live[k], ema[k]) for k in live)
    assert all(not p.requires_grad for p in ema.values())


def test_bf16_mixed_precision_trains(tmp_path):
    module = FaceSwapModule(**TINY, grad_clip=1.0, max_iterations=2)
    trainer = _trainer(tmp_path, 2, precision="bf16-mixed")
    trainer.fit(module, _data())
    assert int(module.iteration) == 2
    assert math.isfinite(float(trainer.callback_metrics["train/loss_g"]))
    assert next(module.generator.parameters()).dtype == torch.float32  # master weights stay fp32


def test_step_scheduler_counts_iterations(tmp_path):
    module = FaceSwapModule(**TINY, lr_step_iterations=2, lr_gamma=0.5, max_iterations=4)
    trainer = _trainer(tmp_path, 4)
    trainer.fit(module, _data())
    for optimizer in trainer.optimizers:
        assert optimizer.param_groups[0]["lr"] == pytest.approx(4e-4 * 0.25)


def test_gradient_clipping_bounds_the_norm(tmp_path):
    module = FaceSwapModule(**TINY, grad_clip=1e-3, lr_g=0.0, lr_d=0.0, max_iterations=1)
    norms = []

    original = module.on_before_optimizer_step

    def record(optimizer):
        original(optimizer)
        params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        norms.append(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params])).item())

    module.on_before_optimizer_step = record
    _trainer(tmp_path, 1).fit(module, _data())
    assert len(norms) == 2 and all(n <= 1e-3 * 1.0001 for n in norms)


@pytest.mark.parametrize("bad, message", [
    (dict(real_images="both"), "real_images"),
    (dict(w_id=-1.0), "w_id"),
    (dict(ema_decay=1.5), "ema_decay"),
    (dict(w_eye=1.0, eye_model=None), "eye_model"),
    (dict(num_aad_blocks=0), "num_aad_blocks"),
])
def test_bad_options_are_named(bad, message):
    with pytest.raises((ModelOptionError, ValueError), match=message):
        FaceSwapModule(**{**TINY, **bad})


# -- memory options: the same training, less memory ----------------------------------------------


@pytest.mark.parametrize("fused", [False, True], ids=["single_tensor", "fused"])
def test_lean_adam_matches_torch_adam_and_keeps_no_first_moment(fused, monkeypatch):
    import torch.optim.adam as adam

    from faceswap_pl.training.optim import make_adam

    kernels = []
    fused_adam = adam._fused_adam
    monkeypatch.setattr(adam, "_fused_adam", lambda *a, **k: kernels.append(1) or fused_adam(*a, **k))
    torch.manual_seed(0)
    weights = [torch.randn(5, 3), torch.randn(7)]
    ours = [w.clone().requires_grad_(True) for w in weights]
    reference = [w.clone().requires_grad_(True) for w in weights]
    lean = make_adam(ours, fused, lr=1e-2, betas=(0.0, 0.999), weight_decay=1e-4)
    plain = torch.optim.Adam(reference, lr=1e-2, betas=(0.0, 0.999), weight_decay=1e-4, fused=fused or None)
    for step in range(4):
        grads = [torch.randn_like(w) for w in weights]
        for params, optimizer in ((ours, lean), (reference, plain)):
            for p, g in zip(params, grads):
                p.grad = g.clone()
            if optimizer is lean and step % 2:
                for p in params:  # one parameter at a time gives the same update as step()
                    lean.step_parameter(p)
            else:
                optimizer.step()
    assert len(kernels) == (4 + 2 + 2 * 2 if fused else 0)  # torch: 4 steps; lean: 2 steps, 2 x 2 parameter steps
    for a, b in zip(ours, reference):
        assert torch.equal(a, b)
        assert torch.equal(lean.state[a]["exp_avg_sq"], plain.state[b]["exp_avg_sq"])
    assert all(set(lean.state[p]) == {"step", "exp_avg_sq"} for p in ours)
    assert all("exp_avg" in plain.state[p] for p in reference)
