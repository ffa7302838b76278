"""GHOST losses: known answers on hand-made tensors."""

from __future__ import annotations

import pytest
import torch

from faceswap_pl import losses


def test_hinge_losses_known_values():
    real = [torch.full((2, 1, 3, 3), 2.0), torch.full((2, 1, 2, 2), 0.5)]   # relu(1-x): 0 and 0.5
    fake = [torch.full((2, 1, 3, 3), -2.0), torch.full((2, 1, 2, 2), 0.0)]  # relu(1+x): 0 and 1
    assert losses.hinge_d_loss(real, fake).item() == pytest.approx(0.5 * (0.5 + 1.0))
    assert losses.hinge_g_loss(fake).item() == pytest.approx(3.0 + 1.0)     # relu(1-x): 3 and 1


def test_identity_loss_zero_for_equal_and_one_for_orthogonal():
    e = torch.nn.functional.normalize(torch.randn(4, 8), dim=-1)
    assert losses.identity_loss(e, e).item() == pytest.approx(0.0, abs=1e-6)
    a, b = torch.eye(2)[:1], torch.eye(2)[1:]
    assert losses.identity_loss(a, b).item() == pytest.approx(1.0)
    assert losses.identity_loss(a, -a).item() == pytest.approx(2.0)


def test_attribute_loss_averages_levels_then_halves():
    zt = [torch.zeros(2, 4, 2, 2), torch.zeros(2, 1, 4, 4)]
    zy = [torch.ones(2, 4, 2, 2), torch.full((2, 1, 4, 4), 2.0)]
    assert losses.attribute_loss(zt, zy).item() == pytest.approx(0.5 * (1.0 + 4.0))
    with pytest.raises(ValueError):
        losses.attribute_loss(zt, zy[:1])


def test_reconstruction_only_over_same_identity_rows_and_zero_without_them():
    target = torch.zeros(3, 3, 4, 4)
    swap = torch.stack([torch.full((3, 4, 4), v) for v in (1.0, 2.0, 3.0)])
    same = torch.tensor([True, False, True])
    assert losses.reconstruction_loss(swap, target, same).item() == pytest.approx(0.5 * (1.0 + 9.0) / 2)
    swap.requires_grad_(True)
    none = losses.reconstruction_loss(swap, target, torch.zeros(3, dtype=torch.bool))
    assert none.item() == 0.0 and torch.isfinite(none)
    none.backward()
    assert torch.equal(swap.grad, torch.zeros_like(swap))


def test_eye_loss_is_mse_and_checks_shapes():
    a, b = torch.zeros(2, 4, 2), torch.full((2, 4, 2), 0.5)
    assert losses.eye_loss(a, b, "mean").item() == pytest.approx(0.25)
    with pytest.raises(ValueError):
        losses.eye_loss(a, b[:, :3])
    with pytest.raises(ValueError, match="reduction"):
        losses.eye_loss(a, b, "max")


def test_eye_loss_sum_is_ghosts_left_mse_plus_right_mse():
    # GHOST: MSE(heat_left(X_t), heat_left(Y)) + MSE(heat_right(X_t), heat_right(Y)) on (N, 64, 64) maps
    left_t, right_t = torch.zeros(2, 8, 8), torch.zeros(2, 8, 8)
    left_y, right_y = torch.full((2, 8, 8), 1.0), torch.full((2, 8, 8), 3.0)
    target, swap = torch.stack([left_t, right_t], 1), torch.stack([left_y, right_y], 1)
    assert losses.eye_loss(swap, target, "sum").item() == pytest.approx(1.0 + 9.0)
    assert losses.eye_loss(swap, target, "mean").item() == pytest.approx((1.0 + 9.0) / 2)
    # points: the first half of dim 1 is one eye, the second half the other
    points = torch.zeros(1, 4, 2)
    moved = points.clone()
    moved[:, :2] = 1.0
    assert losses.eye_loss(moved, points, "sum").item() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="even"):
        losses.eye_loss(torch.zeros(1, 3, 2), torch.ones(1, 3, 2), "sum")


def test_ghost_denominators_divide_by_count_plus_eps():
    fake = [torch.full((2, 1, 3, 3), 0.0), torch.full((2, 1, 2, 2), -1.0)]   # relu(1 - x): 1 and 2 per row
    assert losses.hinge_g_loss(fake, eps=1e-4).item() == pytest.approx((2 * 1.0) / 2.0001 + (2 * 2.0) / 2.0001,
                                                                        rel=1e-7)
    real = [torch.full((2, 1, 3, 3), 0.5)]                                   # relu(1 - x) = 0.5 per row
    assert losses.hinge_d_loss(real, fake, eps=1e-4).item() == pytest.approx(
        0.5 * (2 * 0.5 / 2.0001 + (2 * 1.0 + 2 * 0.0) / 2.0001), rel=1e-7)     # relu(1 + x): 1 and 0
    target = torch.zeros(3, 3, 4, 4)
    swap = torch.stack([torch.full((3, 4, 4), v) for v in (1.0, 2.0, 3.0)])
    same = torch.tensor([True, False, True])
    assert losses.reconstruction_loss(swap, target, same, eps=1e-6).item() == pytest.approx(
        0.5 * (1.0 + 9.0) / (2 + 1e-6), rel=1e-7)
    assert losses.reconstruction_loss(swap, target, torch.zeros(3, dtype=torch.bool), eps=1e-6).item() == 0.0
