"""Alignment maths: known transforms, agreement with OpenCV, differentiability."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from faceswap_pl import alignment


def _similarity(scale, angle_deg, tx, ty):
    a = np.deg2rad(angle_deg)
    return np.array([[scale * np.cos(a), -scale * np.sin(a), tx], [scale * np.sin(a), scale * np.cos(a), ty]])


def test_template_scales_with_crop_size():
    assert np.allclose(alignment.arcface_template(224), alignment.ARCFACE_TEMPLATE_112 * 2)
    with pytest.raises(ValueError):
        alignment.arcface_template(0)


def test_estimate_similarity_recovers_known_transform():
    m = _similarity(1.7, 23.0, 12.5, -4.0)
    src = np.random.default_rng(0).uniform(0, 200, size=(5, 2))
    dst = alignment.transform_points(src, m)
    assert np.allclose(alignment.estimate_similarity(src, dst), m, atol=1e-9)


def test_alignment_puts_keypoints_on_template_and_inverts():
    m_true = _similarity(0.6, -10.0, 40.0, 30.0)
    template = alignment.arcface_template(256)
    keypoints = alignment.transform_points(template, alignment.invert_affine(m_true))
    m = alignment.alignment_matrix(keypoints, 256)
    assert np.allclose(alignment.transform_points(keypoints, m), template, atol=1e-6)
    back = alignment.transform_points(template, alignment.invert_affine(m))
    assert np.allclose(back, keypoints, atol=1e-6)


def test_warp_affine_matches_opencv():
    rng = np.random.default_rng(1)
    image = cv2.GaussianBlur(rng.uniform(0, 1, size=(96, 80, 3)).astype(np.float32), (0, 0), 2.0)
    m = _similarity(0.8, 15.0, 10.0, 5.0)
    expected = cv2.warpAffine(image, m, (64, 64), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    x = torch.from_numpy(image).permute(2, 0, 1)[None]
    got = alignment.warp_affine(x, torch.from_numpy(m).float(), 64)[0].permute(1, 2, 0).numpy()
    inner = (slice(8, -8), slice(8, -8))  # borders differ only in how the edge pixels are filtered
    assert np.abs(got[inner] - expected[inner]).max() < 2e-3


def test_warp_affine_is_differentiable_and_checks_shape():
    x = torch.rand(2, 3, 32, 32, requires_grad=True)
    out = alignment.warp_affine(x, torch.eye(2, 3), 16)
    out.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        alignment.warp_affine(torch.rand(3, 32, 32), torch.eye(2, 3), 16)


def test_resize_aligned_equals_aligning_at_the_other_size():
    # a crop made at 224 then resized to 112 shows the template where an aligned 112 crop does
    m224 = np.diag([2.0, 2.0])
    assert np.allclose(alignment.arcface_template(112) @ m224, alignment.arcface_template(224))
    x = torch.rand(1, 3, 224, 224)
    assert alignment.resize_aligned(x, 112).shape == (1, 3, 112, 112)
    assert alignment.resize_aligned(x, 224) is x
