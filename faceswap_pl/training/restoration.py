"""RestorationModule: trains GHOST's restoration block (:class:`~faceswap_pl.models.restoration.FaceRestorer`).

It learns to undo degradation on the same data as face-swap training: every batch of a
face-swap DataModule (``FaceSwapDataModule`` shards, or the synthetic pairs) holds ``source`` and
``target`` crops; both are used as clean images, degraded on the fly on the batch's device
(:func:`faceswap_pl.data.degrade.degrade`: blur, down- and up-scaling, noise, JPEG-like blocks) and
restored. The loss is L1 to the clean image plus ``w_edge`` times the L1 between their image
gradients. Automatic optimisation with Adam, so ``trainer.global_step`` counts iterations and
``trainer.max_steps`` bounds a run.

Randomness: the degradation of training step ``k`` on rank ``r`` is drawn from a generator seeded
with (``seed``, ``k``, ``r``) and validation batch ``i`` always gets the degradation seeded with
(``seed``, ``i``), so ``val/psnr`` of different runs and epochs compare the same inputs.

Checkpoints carry the restorer's architecture (``restorer_config``), so
:func:`faceswap_pl.models.restoration.load_restorer` rebuilds the network from the ``.ckpt`` alone.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
import torch.nn.functional as F

from faceswap_pl.data.degrade import degrade, psnr
from faceswap_pl.errors import ModelOptionError
from faceswap_pl.models.restoration import RESTORER_CKPT_KEY, FaceRestorer

__all__ = ["RestorationModule", "clean_images", "edge_l1"]


def clean_images(batch: dict[str, Any]) -> torch.Tensor:
    """The batch's ``source`` and ``target`` crops stacked: (2B, 3, S, S) in [-1, 1]."""
    return torch.cat([batch["source"], batch["target"]]).float()


def edge_l1(prediction: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Mean L1 between the horizontal and vertical finite differences of two image batches."""
    def grads(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x[..., :, 1:] - x[..., :, :-1], x[..., 1:, :] - x[..., :-1, :]

    (px, py), (rx, ry) = grads(prediction), grads(reference)
    return 0.5 * (F.l1_loss(px, rx) + F.l1_loss(py, ry))


class RestorationModule(L.LightningModule):
    """Training of :class:`FaceRestorer` on degraded face crops.

    Args:
        width, depth, blocks: the restorer's size (see :class:`FaceRestorer`); crops must be
            divisible by ``2 ** depth``.
        lr, betas, weight_decay: Adam.
        w_edge: weight of the image-gradient L1 term (0 turns it off).
        blur_sigma, downscale, noise_std, jpeg_prob, jpeg_quality: the degradation's ranges
            (see :func:`faceswap_pl.data.degrade.degrade`).
        seed: seed of the degradation (independent of ``seed_everything``).

    Logged: ``train/l1``, ``train/edge``, ``train/loss``, ``train/l1_degraded`` (the L1 of the
    degraded input, the do-nothing baseline) every step; ``val/psnr`` (restored vs clean),
    ``val/psnr_degraded`` (degraded vs clean) and ``val/l1`` per validation run.
    """

    def __init__(
        self,
        width: int = 32,
        depth: int = 3,
        blocks: int = 2,
        lr: float = 2e-4,
        betas: tuple[float, float] = (0.9, 0.99),
        weight_decay: float = 0.0,
        w_edge: float = 0.1,
        blur_sigma: tuple[float, float] = (0.1, 2.0),
        downscale: tuple[float, float] = (1.0, 4.0),
        noise_std: tuple[float, float] = (0.0, 0.04),
        jpeg_prob: float = 0.5,
        jpeg_quality: tuple[float, float] = (30.0, 90.0),
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        _check_options(self.hparams)
        self.restorer = FaceRestorer(width=width, depth=depth, blocks=blocks)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Restore (N, 3, S, S) crops in [-1, 1]."""
        return self.restorer(images)

    def degrade(self, images: torch.Tensor, seed: int) -> torch.Tensor:
        """``images`` degraded with a generator on their device seeded with ``seed``."""
        hp = self.hparams
        generator = torch.Generator(device=images.device).manual_seed(seed)
        return degrade(images, generator, blur_sigma=hp.blur_sigma, downscale=hp.downscale, noise_std=hp.noise_std,
                       jpeg_prob=hp.jpeg_prob, jpeg_quality=hp.jpeg_quality)

    def _step_seed(self, step: int, rank: int = 0) -> int:
        return (int(self.hparams.seed) * 1_000_003 + step) * 1009 + rank

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        clean = clean_images(batch)
        degraded = self.degrade(clean, self._step_seed(self.global_step, self.global_rank))
        restored = self.restorer(degraded)
        l1 = F.l1_loss(restored, clean)
        edge = edge_l1(restored, clean)
        loss = l1 + self.hparams.w_edge * edge
        logged = {"train/l1": l1.detach(), "train/edge": edge.detach(), "train/loss": loss.detach(),
                  "train/l1_degraded": F.l1_loss(degraded, clean)}
        self.log_dict(logged, on_step=True, on_epoch=False, batch_size=clean.shape[0])
        self.log("l1", l1.detach(), prog_bar=True, logger=False, batch_size=clean.shape[0])
        return loss

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        clean = clean_images(batch)
        degraded = self.degrade(clean, self._step_seed(batch_idx) + 7)
        restored = self.restorer(degraded)
        metrics = {"val/psnr": psnr(restored, clean).mean(), "val/psnr_degraded": psnr(degraded, clean).mean(),
                   "val/l1": F.l1_loss(restored, clean)}
        self.log_dict(metrics, on_step=False, on_epoch=True, sync_dist=True, batch_size=clean.shape[0])

    def configure_optimizers(self) -> torch.optim.Optimizer:
        hp = self.hparams
        return torch.optim.Adam(self.restorer.parameters(), lr=hp.lr, betas=tuple(hp.betas),
                                weight_decay=hp.weight_decay)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[RESTORER_CKPT_KEY] = dict(self.restorer.config)


def _check_options(hp) -> None:
    for name in ("blur_sigma", "downscale", "noise_std", "jpeg_quality"):
        pair = list(hp[name])
        if len(pair) != 2 or pair[0] > pair[1]:
            raise ModelOptionError(f"model.{name} must be a [low, high] pair with low <= high, got {pair}.")
    if len(hp.betas) != 2:
        raise ModelOptionError(f"model.betas must be two numbers (Adam's beta1, beta2), got {list(hp.betas)}.")
    for name in ("lr", "weight_decay", "w_edge"):
        if hp[name] < 0:
            raise ModelOptionError(f"model.{name} must be >= 0, got {hp[name]}.")
    if min(hp.blur_sigma) < 0 or min(hp.noise_std) < 0 or min(hp.downscale) < 1:
        raise ModelOptionError("model.blur_sigma and model.noise_std must be >= 0 and model.downscale >= 1; "
                               f"got {list(hp.blur_sigma)}, {list(hp.noise_std)}, {list(hp.downscale)}.")
    if not 0.0 <= hp.jpeg_prob <= 1.0 or not 1 <= min(hp.jpeg_quality) <= max(hp.jpeg_quality) <= 100:
        raise ModelOptionError(f"model.jpeg_prob must be in [0, 1] and model.jpeg_quality within [1, 100]; got "
                               f"{hp.jpeg_prob} and {list(hp.jpeg_quality)}.")
