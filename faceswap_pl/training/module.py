"""FaceSwapModule: GHOST training of AEI-Net against a multi-scale discriminator, manual optimisation.

One training step is one *iteration*: a generator step, then a discriminator step on the detached
swap (GHOST's order, so the generator's graph is freed before the discriminator runs). Lightning's
``trainer.global_step`` counts optimizer steps (two per iteration, one when the discriminator step is
skipped), so everything here counts iterations instead: ``module.iteration`` (saved in checkpoints),
the scheduler, ``max_iterations`` and the x-axis of logged metrics (Lightning logs per batch).

Frozen networks (identity encoder, eye landmark model) are rebuilt from the zoo and never stored in
checkpoints.
"""

from __future__ import annotations

import copy
from typing import Any, Callable, Literal

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_info
from torch import nn

from faceswap_pl import losses
from faceswap_pl.errors import FaceSwapError, ModelOptionError
from faceswap_pl.models.aei_net import AEINet
from faceswap_pl.models.discriminator import MultiscaleDiscriminator
from faceswap_pl.models.identity import IDENTITY_RESIZES, create_identity_encoder
from faceswap_pl.models.importers.ghost import init_discriminator_from, init_generator_from
from faceswap_pl.models.landmarks import create_landmark_model
from faceswap_pl.models.recompute import recomputed
from faceswap_pl.runtime import retain_freed_memory
from faceswap_pl.training.optim import LeanAdam, make_adam

#: the networks ``recompute_networks`` may name
RECOMPUTABLE = ("encoder", "identity", "eye", "discriminator")
Recomputable = Literal["encoder", "identity", "eye", "discriminator"]
CPU_ALLOCATORS = ("retain", "system")


class TrainingDivergedError(FaceSwapError):
    """Too many non-finite losses in a row."""


class FaceSwapModule(L.LightningModule):
    """GHOST / FaceShifter training.

    Args:
        backbone: attribute encoder (``unet``, ``linknet``, ``resnet`` or ``timm:<name>``).
        num_aad_blocks: AAD steps per residual block (GHOST: 1, 2 or 3).
        image_size: crop size S (64, 128, 256 or 512).
        width: channel multiplier of generator and attribute encoder (1.0 = GHOST).
        backbone_kwargs: keyword arguments for a ``timm:<name>`` backbone's ``timm.create_model``, e.g.
            ``{"pretrained": true}`` or, offline, ``{"pretrained": true, "pretrained_cfg_overlay": {"file":
            "resnet18.safetensors"}}``. Only the architecture's arguments reach inference and exports.
        identity_encoder: identity network for the loss (``sface``, ``arcface_iresnet100``, ``onnx:<path>``...).
        identity_weights: weights file for encoders users bring (ArcFace ``backbone.pth``).
        eye_model: landmark model for the eye loss (``mediapipe_iris``, ``awing_fan``); built only if ``w_eye > 0``.
        eye_weights: weights file for ``awing_fan`` (``WFLW_4HG.pth``).
        d_ndf, d_layers, d_scales, d_norm: discriminator width, depth, number of scales, normalisation.
        w_adv, w_id, w_att, w_rec, w_eye: loss weights (GHOST: 1, 20 (15 in stage 1), 10, 10, 0 / ~800 with
            ``awing_fan`` and ``eye_reduction="sum"``).
        real_images: which images the discriminator sees as real: ``source`` (GHOST) or ``target``.
        normalize_identity: feed the generator L2-normalised identity vectors; GHOST feeds the raw
            features (False), in training and at inference.
        identity_resize: how crops are resized to the identity network's input: ``bilinear`` (GHOST's
            train.py: ``F.interpolate(bilinear, align_corners=False)``), ``corners`` (``align_corners=True``,
            GHOST's inference) or ``antialias`` (each encoder's own area-like resize).
        eye_reduction: ``sum`` (GHOST: MSE of the left eye + MSE of the right eye) or ``mean`` (one mean
            over both, half of ``sum``).
        loss_denominators: ``ghost``: batch averages as GHOST writes them, ``sum / (rows + 1e-4)`` for the
            adversarial terms and ``sum / (same rows + 1e-6)`` for reconstruction; ``mean``: plain means.
        init_generator, init_discriminator: weight files to start from when a fit begins (not when it
            resumes): GHOST ``G_*.pth`` / ``D_*.pth`` or a ``faceswap-pl fit`` checkpoint (GHOST's
            ``--pretrained``); the layout must equal the config's (a mismatch names the option to set).
        lr_g, lr_d, betas, weight_decay: Adam settings (GHOST: 4e-4, (0, 0.999), 1e-4).
        lr_step_iterations, lr_gamma: optional step decay every N iterations (GHOST: 5000, 0.2).
        grad_clip: max gradient norm (applied after unscaling), None for no clipping.
        d_skip_threshold: GHOST's rule: skip the discriminator step while the running mean of the
            generator's adversarial loss is >= this (GHOST: 4.0); None disables it.
        d_skip_momentum: momentum of that running mean (GHOST: 0.98); it persists across epochs.
        d_skip_start: the running mean's value before the first iteration (GHOST: 20).
        ema_decay: keep an exponential moving average of the generator (e.g. 0.999); None disables it.
        max_nonfinite: stop with a clear error after this many non-finite iterations in a row.
        max_iterations: stop after this many iterations (None: let the Trainer decide).
        channels_last: run G and D in channels-last memory layout.
        step_in_backward: apply the generator's Adam update to each parameter as soon as its gradient
            is complete during the backward pass, so the generator's gradients never all exist at once
            (saves their memory, 0.7 GB at GHOST's size; the same update). Used only where it is exact
            and nothing else needs the gradients: one process, no ``grad_clip``, no fp16 loss scaling;
            callbacks then see no generator gradients in ``on_before_optimizer_step``.
        recompute_levels: recompute the AAD layers of this many highest-resolution generator blocks in
            the backward pass instead of storing their activations (the same values and gradients;
            see :meth:`AADGenerator.set_recompute`); 0 turns it off. ``benchmarks/train_step.py --variant
            'LABEL={"recompute_levels": N}'`` measures the memory / time trade-off.
        recompute_networks: networks whose activations are recomputed in the backward pass instead of stored,
            each exact (the same values, gradients and BatchNorm statistics): ``encoder`` (the attribute encoder
            on the target and on the swap; its outputs are kept), and the frozen heads on the swap in the
            generator step: ``identity`` (its features), ``eye`` (the landmark model) and ``discriminator``
            (the adversarial term). Each costs one more forward pass of that network per iteration;
            ``benchmarks/train_step.py --variant`` measures what each saves.
        cpu_allocator: ``retain`` keeps freed memory in the process for reuse instead of returning every large
            block to the kernel (glibc's ``malloc``; on CPU runs, process-wide, see :mod:`faceswap_pl.runtime`);
            ``system`` leaves the C library's defaults. The same numbers either way.
        split_backward: take the generator's gradient in pieces (each frozen head differentiated to the swap
            on its own, then one backward through the generator) and the discriminator's real and fake halves
            one after the other, so fewer graphs are alive at once. The same gradients added up in another
            order: float rounding then differs from GHOST's single backward, and Adam's normalisation turns
            that into weight differences of up to ``2 * lr`` on parameters whose true gradient is zero (biases
            in front of a normalisation). Off (GHOST's one backward per phase) for step-for-step parity.
        fused_adam: Adam's fused kernels (one per tensor; not with ``grad_clip``). Off: torch.optim.Adam's
            default implementation for the device, as GHOST's train.py gets it; the fused kernels round the
            last bit of some updates differently, which Adam's normalisation amplifies in later steps.
    """

    ddp_submodules = ("generator", "discriminator")

    def __init__(
        self,
        backbone: str = "unet",
        num_aad_blocks: int = 2,
        image_size: int = 256,
        width: float = 1.0,
        backbone_kwargs: dict[str, Any] | None = None,
        identity_encoder: str = "sface",
        identity_weights: str | None = None,
        eye_model: str | None = "mediapipe_iris",
        eye_weights: str | None = None,
        d_ndf: int = 64,
        d_layers: int = 5,
        d_scales: int = 3,
        d_norm: str = "instance",
        w_adv: float = 1.0,
        w_id: float = 20.0,
        w_att: float = 10.0,
        w_rec: float = 10.0,
        w_eye: float = 0.0,
        real_images: Literal["source", "target"] = "source",
        normalize_identity: bool = False,
        identity_resize: Literal["bilinear", "corners", "antialias"] = "bilinear",
        eye_reduction: Literal["sum", "mean"] = "sum",
        loss_denominators: Literal["ghost", "mean"] = "ghost",
        lr_g: float = 4e-4,
        lr_d: float = 4e-4,
        betas: tuple[float, float] = (0.0, 0.999),
        weight_decay: float = 1e-4,
        lr_step_iterations: int | None = None,
        lr_gamma: float = 0.2,
        grad_clip: float | None = None,
        d_skip_threshold: float | None = None,
        d_skip_momentum: float = 0.98,
        d_skip_start: float = 20.0,
        init_generator: str | None = None,
        init_discriminator: str | None = None,
        ema_decay: float | None = None,
        max_nonfinite: int = 10,
        max_iterations: int | None = None,
        channels_last: bool = False,
        step_in_backward: bool = True,
        recompute_levels: int = 3,
        recompute_networks: list[Recomputable] | tuple[Recomputable, ...] = (),
        cpu_allocator: Literal["retain", "system"] = "retain",
        split_backward: bool = False,
        fused_adam: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.automatic_optimization = False
        _check_options(self.hparams)
        self._frozen: dict[str, nn.Module] = {}
        id_dim = self.identity.embedding_dim
        self.generator = AEINet(backbone, num_aad_blocks=num_aad_blocks, image_size=image_size, width=width,
                                id_dim=id_dim, encoder_kwargs=backbone_kwargs)
        self.generator.generator.set_recompute(recompute_levels)
        self.generator.recompute_encoder = "encoder" in recompute_networks
        self.discriminator = MultiscaleDiscriminator(ndf=d_ndf, n_layers=d_layers, num_scales=d_scales, norm=d_norm)
        self.generator_ema = _ema_copy(self.generator) if ema_decay is not None else None
        self.register_buffer("iteration", torch.zeros((), dtype=torch.long))
        self.register_buffer("adv_running_mean", torch.tensor(float(d_skip_start), dtype=torch.float64))
        self.register_buffer("nonfinite_total", torch.zeros((), dtype=torch.long))
        self._nonfinite_streak = 0
        if channels_last:
            self.generator.to(memory_format=torch.channels_last)
            self.discriminator.to(memory_format=torch.channels_last)

    # ---- frozen networks: built on first use, moved with the module, never saved ----

    @property
    def identity(self) -> nn.Module:
        if "identity" not in self._frozen:
            kwargs = {"weights": self.hparams.identity_weights} if self.hparams.identity_weights else {}
            self._frozen["identity"] = create_identity_encoder(self.hparams.identity_encoder, **kwargs).to(self._device_hint())
        return self._frozen["identity"]

    @property
    def eye(self) -> nn.Module:
        if "eye" not in self._frozen:
            kwargs = {"weights": self.hparams.eye_weights} if self.hparams.eye_weights else {}
            self._frozen["eye"] = create_landmark_model(self.hparams.eye_model, **kwargs).to(self._device_hint())
        return self._frozen["eye"]

    def _device_hint(self) -> torch.device:
        buffer = getattr(self, "iteration", None)
        return buffer.device if buffer is not None else torch.device("cpu")

    def _apply(self, fn, *args, **kwargs):
        super()._apply(fn, *args, **kwargs)
        for net in self._frozen.values():
            net._apply(fn, *args, **kwargs)
        return self

    # ---- the networks as the step uses them (DDP-wrapped under strategy gan_ddp) ----

    def ddp_wrapped(self, name: str) -> nn.Module:
        return getattr(self, "_ddp_wrappers", {}).get(name, getattr(self, name))

    def forward(self, target: torch.Tensor, source_embedding: torch.Tensor) -> torch.Tensor:
        """Swap: (N, 3, S, S) targets in [-1, 1] and (N, id_dim) source vectors (:meth:`source_embedding`) -> (N, 3, S, S)."""
        generator = self.generator_ema if self.generator_ema is not None else self.generator
        return generator(target, source_embedding)[0]

    def identity_features(self, images: torch.Tensor) -> torch.Tensor:
        """Raw identity features (N, D) of aligned crops, resized as ``identity_resize`` says."""
        # in the generator's parameter dtype: float32 out of a bf16 autocast, float64 under 64-true
        return self.identity.features(images, self.hparams.identity_resize).to(self._parameter_dtype())

    def _parameter_dtype(self) -> torch.dtype:
        return self.generator.generator.up1.weight.dtype

    def identity_vector(self, features: torch.Tensor) -> torch.Tensor:
        """What the generator takes: the features as they are (GHOST) or L2-normalised (``normalize_identity``)."""
        return F.normalize(features, dim=-1) if self.hparams.normalize_identity else features

    def source_embedding(self, batch: dict[str, Any]) -> torch.Tensor:
        """The generator's identity input for a batch (N, D).

        From the batch's precomputed ``source_embedding`` when it has one, else the identity encoder's
        features of ``identity_source`` (the source view augmented for the identity encoder alone, GHOST's
        ``Xs_orig``) or, without that view, of ``source``; then :meth:`identity_vector`.
        """
        if batch.get("source_embedding") is not None:
            return self.identity_vector(batch["source_embedding"].to(self._parameter_dtype()))
        images = batch.get("identity_source")
        with torch.no_grad():
            return self.identity_vector(self.identity_features(batch["source"] if images is None else images))

    def _layout(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.hparams.channels_last else x

    # ---- training ----

    def generator_losses(self, batch: dict[str, Any], swap: torch.Tensor, target_attributes: list[torch.Tensor],
                         source_embedding: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every generator loss term (unweighted) for one batch; the eye term only when it is weighted.

        Computed in GHOST's order (D(Y), ArcFace(Y), eye heatmaps, then the losses), so that one backward
        of their weighted sum (:meth:`weighted_generator_loss`) rounds as GHOST's train.py does.
        """
        scores = self._on_swap("discriminator", self.discriminator, swap)
        swap_identity = self._on_swap("identity", self.identity_features, swap)
        eyes = None
        if self.hparams.w_eye > 0:
            with torch.no_grad():
                target_eyes = self.eye.eye_features(batch["target"])
            eyes = (self._on_swap("eye", self.eye.eye_features, swap), target_eyes)
        terms = {"adv": losses.hinge_g_loss(scores, self._adv_eps()),
                 "id": losses.identity_loss(source_embedding, swap_identity)}
        terms.update(self._generator_own_losses(batch, swap, target_attributes))
        if eyes is not None:
            terms["eye"] = losses.eye_loss(*eyes, self.hparams.eye_reduction)
        return terms

    def weighted_generator_loss(self, terms: dict[str, torch.Tensor]) -> torch.Tensor:
        """``w_adv L_adv + w_att L_attr + w_id L_id + w_rec L_rec (+ w_eye L_eye)``, summed in GHOST's order."""
        weights = self._loss_weights()
        loss = 0.0
        for name in ("adv", "att", "id", "rec", "eye"):
            if name in terms:
                loss = loss + weights[name] * terms[name]
        return loss

    def _frozen_head_losses(self, batch: dict[str, Any], source_embedding: torch.Tensor) -> dict[str, Callable]:
        """The loss terms computed by networks that get no parameter gradient in the generator step
        (the discriminator, toggled off, and the frozen identity / eye networks): ``swap -> term``."""
        eps = self._adv_eps()
        heads: dict[str, Callable] = {
            "adv": lambda swap: losses.hinge_g_loss(self._on_swap("discriminator", self.discriminator, swap), eps),
            "id": lambda swap: losses.identity_loss(source_embedding,
                                                    self._on_swap("identity", self.identity_features, swap)),
        }
        if self.hparams.w_eye > 0:
            with torch.no_grad():
                target_eyes = self.eye.eye_features(batch["target"])
            heads["eye"] = lambda swap: losses.eye_loss(self._on_swap("eye", self.eye.eye_features, swap),
                                                        target_eyes, self.hparams.eye_reduction)
        return heads

    def _on_swap(self, name: str, function: Callable, swap: torch.Tensor):
        """``function(swap)`` for a frozen head of the generator step, recomputed in the backward pass when
        ``recompute_networks`` names it."""
        if name not in self.hparams.recompute_networks:
            return function(swap)
        network = {"discriminator": self.discriminator, "identity": self.identity, "eye": self.eye}[name]
        return recomputed(network, function, swap)

    def _adv_eps(self) -> float:
        return losses.GHOST_ADV_EPS if self.hparams.loss_denominators == "ghost" else 0.0

    def _rec_eps(self) -> float:
        return losses.GHOST_REC_EPS if self.hparams.loss_denominators == "ghost" else 0.0

    def _generator_own_losses(self, batch: dict[str, Any], swap: torch.Tensor,
                              target_attributes: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        """The terms whose gradient also reaches generator parameters by another path than ``swap``."""
        return {
            "att": losses.attribute_loss(target_attributes, self.generator.get_attr(swap)),
            "rec": losses.reconstruction_loss(swap, batch["target"], batch["same_identity"], self._rec_eps()),
        }

    def _generator_backward(self, batch: dict[str, Any], swap: torch.Tensor, target_attributes: list[torch.Tensor],
                            source_embedding: torch.Tensor, stepper: LeanAdam | None = None,
                            ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Backward of the weighted generator loss; returns the detached terms and the loss.

        One ``manual_backward`` of :meth:`weighted_generator_loss` (GHOST's), or with ``split_backward`` the
        same gradient taken in pieces (:meth:`_split_generator_backward`). With ``stepper`` and a finite loss,
        each generator parameter is updated by ``stepper.step_parameter`` as soon as its gradient is
        complete, and its gradient dropped.
        """
        if self.hparams.split_backward:
            return self._split_generator_backward(batch, swap, target_attributes, source_embedding, stepper)
        terms = self.generator_losses(batch, swap, target_attributes, source_embedding)
        loss_g = self.weighted_generator_loss(terms)
        self._backward_stepping(loss_g, stepper, loss_g)
        return {name: value.detach() for name, value in terms.items()}, loss_g.detach()

    def _backward_stepping(self, loss: torch.Tensor, stepper: LeanAdam | None, loss_g: torch.Tensor) -> None:
        """``manual_backward(loss)``, stepping each generator parameter inside it when ``stepper`` is given."""
        hooks = []
        if stepper is not None and self._all_finite(loss_g):
            def step_now(param: torch.Tensor) -> None:
                stepper.step_parameter(param)
                param.grad = None

            hooks = [p.register_post_accumulate_grad_hook(step_now) for p in self.generator.parameters()
                     if p.requires_grad]
        try:
            self.manual_backward(loss)
        finally:
            for hook in hooks:
                hook.remove()

    def _split_generator_backward(self, batch: dict[str, Any], swap: torch.Tensor,
                                  target_attributes: list[torch.Tensor], source_embedding: torch.Tensor,
                                  stepper: LeanAdam | None) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """The generator's gradient taken in pieces, so that fewer graphs are alive at once.

        Each frozen head (discriminator, identity, eye network) runs on a detached copy of the swap and is
        differentiated to the swap at once, freeing its graph; the sum of those swap gradients then enters
        the one backward through the generator, together with the attribute and reconstruction terms (a
        surrogate ``sum(swap * g)`` whose gradient is ``g``). The same gradient as one backward, added up
        in another order.
        """
        weights = self._loss_weights()
        scale = self._loss_scale()
        leaf = swap.detach().requires_grad_(True)
        values: dict[str, torch.Tensor] = {}
        swap_grad = None
        for name, head in self._frozen_head_losses(batch, source_embedding).items():
            weighted = weights[name] > 0
            with torch.set_grad_enabled(weighted):
                value = head(leaf)
            if weighted:
                (grad,) = torch.autograd.grad(weights[name] * value * scale, leaf)
                swap_grad = grad if swap_grad is None else swap_grad + grad
            values[name] = value.detach()
            del value
        own = self._generator_own_losses(batch, swap, target_attributes)
        values.update({name: value.detach() for name, value in own.items()})
        terms = {name: values[name] for name in ("adv", "id", "att", "rec", "eye") if name in values}
        loss_g = self.weighted_generator_loss(terms)

        surrogate = sum(weights[name] * value for name, value in own.items())
        if swap_grad is not None:
            surrogate = surrogate + (swap * (swap_grad / scale)).sum()
        del own, swap_grad
        self._backward_stepping(surrogate, stepper, loss_g)
        return terms, loss_g

    def _step_in_backward(self, optimizer) -> LeanAdam | None:
        """The generator's optimizer when its step may run inside the backward pass (see ``step_in_backward``)."""
        optimizer = getattr(optimizer, "optimizer", optimizer)  # unwrap LightningOptimizer
        if (not self.hparams.step_in_backward or self.hparams.grad_clip is not None
                or not isinstance(optimizer, LeanAdam) or self.trainer.world_size > 1
                or getattr(self.trainer.precision_plugin, "scaler", None) is not None):
            return None
        return optimizer

    def _loss_weights(self) -> dict[str, float]:
        hp = self.hparams
        return {"adv": hp.w_adv, "id": hp.w_id, "att": hp.w_att, "rec": hp.w_rec, "eye": hp.w_eye}

    def _loss_scale(self) -> float:
        """The fp16 gradient scaler's current scale (a power of two), 1.0 without one."""
        scaler = getattr(self.trainer.precision_plugin, "scaler", None) if self._trainer is not None else None
        return float(scaler.get_scale()) if scaler is not None and scaler.is_enabled() else 1.0

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        hp = self.hparams
        opt_g, opt_d = self.optimizers()
        target = self._layout(batch["target"])
        source_embedding = self.source_embedding(batch)

        with self.toggled_optimizer(opt_g):
            swap, target_attributes = self.ddp_wrapped("generator")(target, source_embedding)
            terms, loss_g = self._generator_backward(batch, swap, target_attributes, source_embedding,
                                                     self._step_in_backward(opt_g))
            del target_attributes
            swap = swap.detach()
            g_finite = self._all_finite(loss_g)
            if g_finite:
                opt_g.step()  # after a step inside the backward: no gradients left, Lightning's bookkeeping only
            opt_g.zero_grad(set_to_none=True)
        if g_finite and self.generator_ema is not None:
            _ema_update(self.generator_ema, self.generator, hp.ema_decay)

        adv = self.trainer.strategy.reduce(terms["adv"].detach().double(), reduce_op="mean")
        if torch.isfinite(adv):  # in float64, as GHOST's Python float: m * 0.98 + L_adv * 0.02
            self.adv_running_mean.mul_(hp.d_skip_momentum).add_(adv.double() * (1 - hp.d_skip_momentum))
        skip_d = hp.d_skip_threshold is not None and bool(self.adv_running_mean >= hp.d_skip_threshold)

        with self.toggled_optimizer(opt_d), torch.set_grad_enabled(not skip_d):
            real_scores, fake_scores, loss_d = self._discriminator_backward(batch, swap, backward=not skip_d)
            d_finite = True
            if not skip_d:
                d_finite = self._all_finite(loss_d)
                if d_finite:
                    opt_d.step()
                opt_d.zero_grad(set_to_none=True)

        self._count_nonfinite(g_finite and d_finite)
        for scheduler in self._schedulers():
            scheduler.step()
        self.iteration += 1

        logged = {f"train/{name}": value.detach() for name, value in terms.items()}
        logged.update({
            "train/loss_g": loss_g.detach(), "train/loss_d": loss_d.detach(),
            "train/d_real": torch.stack([s.mean() for s in real_scores]).mean().detach(),
            "train/d_fake": torch.stack([s.mean() for s in fake_scores]).mean().detach(),
            "train/d_skipped": float(skip_d), "train/adv_running_mean": self.adv_running_mean.float(),
            "train/nonfinite_total": self.nonfinite_total.float(), "train/iteration": self.iteration.float(),
        })
        self.log_dict(logged, on_step=True, on_epoch=False, batch_size=target.shape[0])
        self.log("loss_g", loss_g.detach(), prog_bar=True, logger=False, batch_size=target.shape[0])
        if "skipped" in batch:  # corrupt JPEGs the shard reader skipped since its previous batch
            self.log("train/corrupt_frames", batch["skipped"].float().sum(), reduce_fx="sum", on_step=False,
                     on_epoch=True, batch_size=target.shape[0])

    def _discriminator_backward(self, batch: dict[str, Any], swap: torch.Tensor, backward: bool
                                ) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor]:
        """The discriminator's scores on real images and on the detached swap, its loss, and (with
        ``backward``) the loss's backward: one, on GHOST's ``0.5 * (L_true + L_fake)`` computed in GHOST's
        order, or with ``split_backward`` the real and fake halves one after the other (their gradients add
        up in ``.grad``; the activations of only one batch are alive at a time). Returns detached scores."""
        hp = self.hparams
        discriminator = self.ddp_wrapped("discriminator")
        real = self._layout(batch["source"] if hp.real_images == "source" else batch["target"])
        eps = self._adv_eps()
        if hp.split_backward:
            real_scores = discriminator(real)
            if backward:
                self.manual_backward(0.5 * losses.hinge_d_term(real_scores, real=True, eps=eps))
            fake_scores = discriminator(swap)
            if backward:
                self.manual_backward(0.5 * losses.hinge_d_term(fake_scores, real=False, eps=eps))
            real_scores = [s.detach() for s in real_scores]
            fake_scores = [s.detach() for s in fake_scores]
            return real_scores, fake_scores, losses.hinge_d_loss(real_scores, fake_scores, eps)
        fake_scores = discriminator(swap)
        loss_fake = losses.hinge_d_term(fake_scores, real=False, eps=eps)
        real_scores = discriminator(real)
        loss_real = losses.hinge_d_term(real_scores, real=True, eps=eps)
        loss_d = 0.5 * (loss_real + loss_fake)
        if backward:
            self.manual_backward(loss_d)
        return [s.detach() for s in real_scores], [s.detach() for s in fake_scores], loss_d.detach()

    def _all_finite(self, loss: torch.Tensor) -> bool:
        finite = bool(torch.isfinite(loss.detach()).all())
        return bool(self.trainer.strategy.reduce_boolean_decision(finite, all=True))

    def _count_nonfinite(self, finite: bool) -> None:
        if finite:
            self._nonfinite_streak = 0
            return
        self.nonfinite_total += 1
        self._nonfinite_streak += 1
        if self._nonfinite_streak >= self.hparams.max_nonfinite:
            raise TrainingDivergedError(
                f"Training stopped at iteration {int(self.iteration)}: {self._nonfinite_streak} non-finite losses "
                f"in a row (steps were skipped, weights are unchanged); lower model.lr_g / model.lr_d, set "
                f"model.grad_clip, or train with trainer.precision=32-true, then resume from the last checkpoint."
            )

    def _schedulers(self) -> list:
        schedulers = self.lr_schedulers()
        if schedulers is None:
            return []
        return schedulers if isinstance(schedulers, list) else [schedulers]

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        if self.hparams.max_iterations is not None and int(self.iteration) >= self.hparams.max_iterations:
            self.trainer.should_stop = True

    def on_before_optimizer_step(self, optimizer) -> None:
        # runs after the precision plugin has unscaled fp16 gradients
        if self.hparams.grad_clip is not None:
            self.clip_gradients(optimizer, gradient_clip_val=self.hparams.grad_clip, gradient_clip_algorithm="norm")

    # ---- validation ----

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        source_embedding = self.source_embedding(batch)
        swap = self(batch["target"], source_embedding)
        metrics = {
            "val/id_cos": F.cosine_similarity(source_embedding, self.identity_features(swap), dim=-1).mean(),
            "val/rec": losses.reconstruction_loss(swap, batch["target"], batch["same_identity"], self._rec_eps()),
            "val/att": losses.attribute_loss(self.generator.get_attr(batch["target"]), self.generator.get_attr(swap)),
        }
        self.log_dict(metrics, on_step=False, on_epoch=True, sync_dist=True, batch_size=swap.shape[0])

    def setup(self, stage: str) -> None:
        if self.hparams.cpu_allocator == "retain" and self.trainer.strategy.root_device.type == "cpu":
            if retain_freed_memory():
                rank_zero_info("CPU memory: freed blocks are kept for reuse (model.cpu_allocator=retain).")
        datamodule = getattr(self.trainer, "datamodule", None)
        describe = getattr(datamodule, "precomputed_embeddings", None)
        if callable(describe):
            self.check_precomputed_embeddings(describe())

    def on_fit_start(self) -> None:
        # runs after a resumed fit restored its checkpoint (iteration > 0), which then keeps its own weights
        if int(self.iteration) == 0:
            self.load_initial_weights()

    def load_initial_weights(self) -> None:
        """Load ``init_generator`` / ``init_discriminator`` (GHOST's ``--pretrained``) and restart the EMA copy."""
        hp = self.hparams
        if hp.init_generator:
            what = init_generator_from(self.generator, hp.init_generator)
            if self.generator_ema is not None:
                self.generator_ema.load_state_dict(self.generator.state_dict())
            rank_zero_info(f"Generator initialised from {hp.init_generator}: {what}.")
        if hp.init_discriminator:
            what = init_discriminator_from(self.discriminator, hp.init_discriminator)
            rank_zero_info(f"Discriminator initialised from {hp.init_discriminator}: {what}.")

    def check_precomputed_embeddings(self, info: dict[str, Any] | None) -> None:
        """Refuse shard embeddings of another encoder, or unit vectors where raw ones are fed (one sentence each).

        ``info``: ``{"encoder": name, "vector": "raw" | "unit"}`` from the datamodule, None without embeddings.
        """
        if not info:
            return
        hp = self.hparams
        if info["encoder"] != hp.identity_encoder:
            raise ModelOptionError(
                f"The shards' precomputed embeddings come from {info['encoder']!r} but model.identity_encoder is "
                f"{hp.identity_encoder!r}; set data.use_embeddings=false, or rebuild the shards with "
                f"`faceswap-pl shards build --embeddings {hp.identity_encoder}`.")
        if info["vector"] == "unit" and not hp.normalize_identity:
            raise ModelOptionError(
                "The shards' precomputed embeddings are unit vectors (an older build) but model.normalize_identity "
                "is false (GHOST feeds raw features); set data.use_embeddings=false, rebuild the shards, or set "
                "model.normalize_identity=true.")

    def configure_optimizers(self):
        hp = self.hparams
        # fused Adam: one kernel per tensor and no temporaries; not with clipping, which Lightning's
        # mixed-precision plugin refuses for optimizers that unscale gradients themselves
        fused = hp.fused_adam and hp.grad_clip is None
        opt_g = make_adam(self.generator.parameters(), fused, lr=hp.lr_g, betas=tuple(hp.betas), weight_decay=hp.weight_decay)
        opt_d = make_adam(self.discriminator.parameters(), fused, lr=hp.lr_d, betas=tuple(hp.betas),
                      weight_decay=hp.weight_decay)
        for optimizer in (opt_g, opt_d):
            optimizer.init_state()
        if hp.lr_step_iterations is None:
            return [opt_g, opt_d]
        decay = lambda it: hp.lr_gamma ** (it // hp.lr_step_iterations)  # noqa: E731 - stepped once per iteration
        return [opt_g, opt_d], [torch.optim.lr_scheduler.LambdaLR(opt_g, decay),
                                torch.optim.lr_scheduler.LambdaLR(opt_d, decay)]


def _check_options(hp) -> None:
    if hp.backbone_kwargs and not str(hp.backbone).startswith("timm:"):
        raise ModelOptionError(f"model.backbone_kwargs is for timm:<name> backbones (timm.create_model's "
                               f"arguments); the built-in backbone {hp.backbone!r} takes none.")
    if hp.real_images not in ("source", "target"):
        raise ModelOptionError(f"model.real_images must be 'source' or 'target', got {hp.real_images!r}.")
    if hp.w_eye > 0 and not hp.eye_model:
        raise ModelOptionError("model.w_eye > 0 needs model.eye_model ('mediapipe_iris' or 'awing_fan').")
    for name in ("w_adv", "w_id", "w_att", "w_rec", "w_eye", "lr_g", "lr_d", "weight_decay"):
        if hp[name] < 0:
            raise ModelOptionError(f"model.{name} must be >= 0, got {hp[name]}.")
    for name, choices in (("identity_resize", IDENTITY_RESIZES), ("eye_reduction", losses.EYE_REDUCTIONS),
                          ("loss_denominators", ("ghost", "mean"))):
        if hp[name] not in choices:
            raise ModelOptionError(f"model.{name} must be one of {', '.join(choices)}, got {hp[name]!r}.")
    unknown = [name for name in hp.recompute_networks if name not in RECOMPUTABLE]
    if isinstance(hp.recompute_networks, str) or unknown:
        raise ModelOptionError(f"model.recompute_networks must be a list of {', '.join(RECOMPUTABLE)}, got "
                               f"{hp.recompute_networks!r}.")
    if hp.cpu_allocator not in CPU_ALLOCATORS:
        raise ModelOptionError(f"model.cpu_allocator must be one of {', '.join(CPU_ALLOCATORS)}, got "
                               f"{hp.cpu_allocator!r}.")
    if hp.max_nonfinite < 1:
        raise ModelOptionError(f"model.max_nonfinite must be >= 1, got {hp.max_nonfinite}.")
    if hp.ema_decay is not None and not 0.0 < hp.ema_decay < 1.0:
        raise ModelOptionError(f"model.ema_decay must be in (0, 1) or null, got {hp.ema_decay}.")


def _ema_copy(module: nn.Module) -> nn.Module:
    ema = copy.deepcopy(module)
    ema.requires_grad_(False)
    return ema


@torch.no_grad()
def _ema_update(ema: nn.Module, module: nn.Module, decay: float) -> None:
    for e, p in zip(ema.parameters(), module.parameters()):
        e.lerp_(p, 1.0 - decay)
    for e, b in zip(ema.buffers(), module.buffers()):
        e.copy_(b)
