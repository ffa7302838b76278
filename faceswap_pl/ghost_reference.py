"""GHOST's training iteration restated in plain PyTorch: the reference :class:`~faceswap_pl.training.module.FaceSwapModule`
is tested and benchmarked against.

No Lightning, no memory options: ``torch.optim.Adam`` for G and D, one ``backward()`` per phase, the
discriminator run on the swap twice (on ``Y`` for the generator's adversarial term, on ``Y.detach()`` for
its own), every loss written as GHOST's train.py and ``utils/training/losses.py`` compute it
(``../shared/reference/ghost_facts.md`` lists the formulas):

* identity vector ``embed = ArcFace(interpolate(Xs_orig, 112, bilinear))``, raw, without gradients;
* ``L_adv = sum_k sum_rows(mean relu(1 - D_k(Y))) / (rows + 1e-4)``;
* ``L_id = mean(1 - cos(embed, ArcFace(interpolate(Y, 112, bilinear))))``;
* ``L_attr = 0.5 * sum_levels mean_rows(mean (z(X_t) - z(Y))^2)``;
* ``L_rec = sum_rows(0.5 * mean (Y - X_t)^2 * same) / (same.sum() + 1e-6)``;
* ``L_eye = MSE(left pupil heatmaps) + MSE(right pupil heatmaps)`` (AWing FAN on ``(Y + 1) / 2``);
* ``L_D = 0.5 * (sum_k avg relu(1 - D_k(Xs)) + sum_k avg relu(1 + D_k(Y.detach())))``, averages as ``L_adv``;
* the optional discriminator-skip rule: a running mean of ``L_adv`` starting at 20, ``0.98 m + 0.02 L_adv``,
  the D step skipped while it is >= the threshold (its backward still runs, as in GHOST).

At GHOST's size the networks see GHOST's shapes; at smaller test sizes ArcFace (112 px) and the FAN
(256 px) get their inputs by the same bilinear resize, which is how the module generalises them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

ADV_EPS = 1e-4
REC_EPS = 1e-6
ARCFACE_SIZE = 112
FAN_SIZE = 256
PUPILS = (96, 97)


def _resized(x: torch.Tensor, size: int) -> torch.Tensor:
    if x.shape[-1] == size:
        return x
    return F.interpolate(x, [size, size], mode="bilinear", align_corners=False)


def _hinge_rows(score: torch.Tensor, positive: bool) -> torch.Tensor:
    """GHOST's ``hinge_loss(di, positive).mean(dim=[1, 2, 3])``: (N,) per-row means."""
    return (torch.relu(1 - score) if positive else torch.relu(score + 1)).mean(dim=[1, 2, 3])


@dataclass
class GhostWeights:
    """GHOST's loss weights (train.py defaults; the eye weight is 0 unless its eye loss is on)."""

    adv: float = 1.0
    attr: float = 10.0
    id: float = 20.0
    rec: float = 10.0
    eyes: float = 0.0


@dataclass
class GhostReferenceLoop:
    """One GHOST iteration per :meth:`step`.

    Args:
        G: the AEI-Net (train mode; its attribute encoder's BatchNorm statistics update on X_t and on Y).
        D: the multi-scale discriminator (its maps are ``D(x)[k]``).
        arcface: the raw iresnet (112 px input, [-1, 1] RGB, raw features), frozen and in eval mode.
        fan: the AWing FAN ((N, 3, 256, 256) in [0, 1] -> list of stacks), or None without the eye loss.
        weights: loss weights.
        lr_g, lr_d, betas, weight_decay: GHOST's Adam settings.
        d_skip_threshold: GHOST's ``discr_force`` threshold (4.0) or None (the default: always step D).
        fused: torch Adam's fused implementation instead of its single-tensor one (GHOST: off); the reference
            for a module trained with ``fused_adam``.
    """

    G: nn.Module
    D: nn.Module
    arcface: nn.Module
    fan: nn.Module | None = None
    weights: GhostWeights = field(default_factory=GhostWeights)
    lr_g: float = 4e-4
    lr_d: float = 4e-4
    betas: tuple[float, float] = (0.0, 0.999)
    weight_decay: float = 1e-4
    d_skip_threshold: float | None = None
    loss_adv_accumulated: float = 20.0
    fused: bool = False

    def __post_init__(self) -> None:
        fused = True if self.fused else None
        self.opt_G = torch.optim.Adam(self.G.parameters(), lr=self.lr_g, betas=self.betas,
                                      weight_decay=self.weight_decay, fused=fused)
        self.opt_D = torch.optim.Adam(self.D.parameters(), lr=self.lr_d, betas=self.betas,
                                      weight_decay=self.weight_decay, fused=fused)
        self.G.train()
        self.D.train()
        self.arcface.eval()
        if self.fan is not None:
            self.fan.eval()

    def pupils(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """GHOST's ``detect_landmarks``: last-stack heatmaps of the two pupils, each (N, 64, 64)."""
        heatmaps = self.fan(_resized(0.5 * images + 0.5, FAN_SIZE))[-1][:, :-1]
        return heatmaps[:, PUPILS[0]], heatmaps[:, PUPILS[1]]

    def step(self, Xs_orig: torch.Tensor, Xs: torch.Tensor, Xt: torch.Tensor,
             same_person: torch.Tensor) -> dict[str, float]:
        """One iteration on GHOST's batch; returns every loss term and whether D stepped."""
        w = self.weights
        with torch.no_grad():
            embed = self.arcface(_resized(Xs_orig, ARCFACE_SIZE))
        diff_person = torch.ones_like(same_person, dtype=Xt.dtype)
        same_person = same_person.to(Xt.dtype)

        self.opt_G.zero_grad()
        Y, Xt_attr = self.G(Xt, embed)
        Di = self.D(Y)
        ZY = self.arcface(_resized(Y, ARCFACE_SIZE))
        if w.eyes > 0:  # in train.py's order: the heatmaps before the losses
            with torch.no_grad():
                target_left, target_right = self.pupils(Xt)
            swap_left, swap_right = self.pupils(Y)
        L_adv = sum(_hinge_rows(d, True) for d in Di)
        L_adv = torch.sum(L_adv * diff_person) / (diff_person.sum() + ADV_EPS)
        L_id = (1 - torch.cosine_similarity(embed, ZY, dim=1)).mean()
        Y_attr = self.G.get_attr(Y)
        L_attr = sum(torch.mean(torch.pow(a - b, 2).reshape(Y.shape[0], -1), dim=1).mean()
                     for a, b in zip(Xt_attr, Y_attr)) / 2.0
        L_rec = torch.sum(0.5 * torch.mean(torch.pow(Y - Xt, 2).reshape(Y.shape[0], -1), dim=1) * same_person) \
            / (same_person.sum() + REC_EPS)
        L_eye = torch.zeros(())
        if w.eyes > 0:
            L_eye = F.mse_loss(target_left, swap_left) + F.mse_loss(target_right, swap_right)
        lossG = w.adv * L_adv + w.attr * L_attr + w.id * L_id + w.rec * L_rec + w.eyes * L_eye
        self.loss_adv_accumulated = self.loss_adv_accumulated * 0.98 + L_adv.item() * 0.02
        lossG.backward()
        self.opt_G.step()

        self.opt_D.zero_grad()
        fake = sum(torch.sum(_hinge_rows(d, False) * diff_person) / (diff_person.sum() + ADV_EPS) for d in self.D(Y.detach()))
        true = sum(torch.sum(_hinge_rows(d, True) * diff_person) / (diff_person.sum() + ADV_EPS) for d in self.D(Xs))
        lossD = 0.5 * (true.mean() + fake.mean())
        lossD.backward()
        stepped = self.d_skip_threshold is None or self.loss_adv_accumulated < self.d_skip_threshold
        if stepped:
            self.opt_D.step()
        return {"adv": L_adv.item(), "id": L_id.item(), "att": L_attr.item(), "rec": L_rec.item(),
                "eye": L_eye.item(), "loss_g": lossG.item(), "loss_d": lossD.item(), "d_stepped": stepped,
                "adv_running_mean": self.loss_adv_accumulated}
