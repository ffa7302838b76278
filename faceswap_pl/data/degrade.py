"""Random image degradation on the batch's device, for training the restoration block.

:func:`degrade` applies, per image and with parameters drawn from a seeded ``torch.Generator``:
Gaussian blur -> downscale by a random factor and upscale back -> Gaussian noise -> JPEG-like 8x8
block-DCT quantisation (with some probability). Torch only, no gradients needed, float32 whatever
autocast says; the same generator state gives the same output.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
import torch.nn.functional as F

__all__ = ["degrade", "psnr"]

# JPEG's standard quantisation tables (ITU-T T.81, Annex K), row-major 8x8.
_LUMA_Q = (
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
)
_CHROMA_Q = (17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99, 24, 26, 56, 99, 99, 99, 99, 99,
             47, 66, 99, 99, 99, 99, 99, 99) + (99,) * 32
_RGB_TO_YCBCR = ((0.299, 0.587, 0.114), (-0.168736, -0.331264, 0.5), (0.5, -0.418688, -0.081312))


def _uniform(low_high, n: int, g: torch.Generator, device: torch.device) -> torch.Tensor:
    low, high = (float(v) for v in low_high)
    return low + (high - low) * torch.rand(n, generator=g, device=device)


def _blur(x: torch.Tensor, sigma: torch.Tensor, max_sigma: float) -> torch.Tensor:
    """Separable Gaussian blur with one sigma per image (reflect padding)."""
    n, c, h, w = x.shape
    radius = max(1, min(math.ceil(3 * max_sigma), (min(h, w) - 1) // 2))
    taps = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    kernel = torch.exp(-0.5 * (taps[None] / sigma[:, None].clamp_min(1e-3)) ** 2)
    kernel = (kernel / kernel.sum(1, keepdim=True)).repeat_interleave(c, 0)  # (n*c, k)
    y = x.reshape(1, n * c, h, w)
    y = F.conv2d(F.pad(y, (radius, radius, 0, 0), mode="reflect"), kernel[:, None, None, :], groups=n * c)
    y = F.conv2d(F.pad(y, (0, 0, radius, radius), mode="reflect"), kernel[:, None, :, None], groups=n * c)
    return y.reshape(n, c, h, w)


def _resample(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Each image downscaled by its factor (antialiased bilinear) and upscaled back (bilinear)."""
    h, w = x.shape[-2:]
    out = []
    for image, f in zip(x, factor.tolist()):
        small = (max(1, round(h / f)), max(1, round(w / f)))
        if small == (h, w):
            out.append(image)
            continue
        down = F.interpolate(image[None], size=small, mode="bilinear", antialias=True, align_corners=False)
        out.append(F.interpolate(down, size=(h, w), mode="bilinear", align_corners=False)[0])
    return torch.stack(out)


@lru_cache(maxsize=8)
def _dct_matrix(device: torch.device) -> torch.Tensor:
    k = torch.arange(8, dtype=torch.float64)
    m = torch.cos((2 * k[None] + 1) * k[:, None] * math.pi / 16) * math.sqrt(2 / 8)
    m[0] /= math.sqrt(2)
    return m.float().to(device)  # orthonormal: m @ m.T = I


def _jpeg_like(x: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
    """JPEG's lossy core on images in [-1, 1]: YCbCr, 8x8 DCT, quantisation with the standard tables
    scaled by ``quality`` (1-100, per image), and back. No chroma subsampling or entropy coding."""
    n, _, h, w = x.shape
    ph, pw = (-h) % 8, (-w) % 8
    pixels = F.pad((x + 1) * 127.5, (0, pw, 0, ph), mode="replicate")
    to_ycc = torch.tensor(_RGB_TO_YCBCR, device=x.device)
    ycc = torch.einsum("ij,njhw->nihw", to_ycc, pixels)
    ycc[:, 0] -= 128.0
    scale = torch.where(quality < 50, 5000 / quality, 200 - 2 * quality)  # libjpeg's quality scaling
    tables = torch.tensor([_LUMA_Q, _CHROMA_Q, _CHROMA_Q], device=x.device, dtype=x.dtype).view(1, 3, 8, 8)
    step = ((tables * scale.view(n, 1, 1, 1) + 50) / 100).floor().clamp(1, 255)[:, :, None, None]  # (n,3,1,1,8,8)
    m = _dct_matrix(x.device)
    H, W = ycc.shape[-2:]
    blocks = ycc.reshape(n, 3, H // 8, 8, W // 8, 8).permute(0, 1, 2, 4, 3, 5)  # (n, 3, bh, bw, 8, 8)
    coeff = m @ blocks @ m.T
    blocks = m.T @ ((coeff / step).round() * step) @ m
    ycc = blocks.permute(0, 1, 2, 4, 3, 5).reshape(n, 3, H, W)
    ycc[:, 0] += 128.0
    rgb = torch.einsum("ij,njhw->nihw", torch.linalg.inv(to_ycc), ycc)
    return (rgb[..., :h, :w] / 127.5 - 1).clamp(-1, 1)


@torch.no_grad()
def degrade(images: torch.Tensor, generator: torch.Generator, blur_sigma: tuple[float, float] = (0.1, 2.0),
            downscale: tuple[float, float] = (1.0, 4.0), noise_std: tuple[float, float] = (0.0, 0.04),
            jpeg_prob: float = 0.5, jpeg_quality: tuple[float, float] = (30.0, 90.0)) -> torch.Tensor:
    """Randomly degraded copies of ``images``.

    Args:
        images: (N, 3, H, W) RGB in [-1, 1], on any device.
        generator: a ``torch.Generator`` on ``images.device``; it alone decides every random choice.
        blur_sigma: range of the Gaussian blur's sigma in pixels (per image, uniform).
        downscale: range of the factor by which each image is shrunk before being enlarged back.
        noise_std: range of the additive Gaussian noise's standard deviation (in [-1, 1] units).
        jpeg_prob: probability that an image goes through the JPEG-like quantisation.
        jpeg_quality: range of its JPEG quality (1-100; lower is blockier).

    Returns:
        (N, 3, H, W) float32 in [-1, 1], on ``images.device``.
    """
    device = images.device
    with torch.autocast(device.type, enabled=False):
        x = images.detach().float()
        n = x.shape[0]
        x = _blur(x, _uniform(blur_sigma, n, generator, device), max(blur_sigma))
        x = _resample(x, _uniform(downscale, n, generator, device).clamp_min(1.0))
        noise = torch.randn(x.shape, generator=generator, device=device)
        x = x + _uniform(noise_std, n, generator, device).view(n, 1, 1, 1) * noise
        x = x.clamp(-1, 1)
        quality = _uniform(jpeg_quality, n, generator, device).clamp(1, 100)
        chosen = torch.rand(n, generator=generator, device=device) < jpeg_prob
        if bool(chosen.any()):
            x[chosen] = _jpeg_like(x[chosen], quality[chosen])
        return x


def psnr(prediction: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB of images in [-1, 1] (peak-to-peak 2, i.e. the usual PSNR on [0, 1]): (N,)."""
    mse = ((prediction.float() - reference.float()) ** 2).flatten(1).mean(1)
    return 10 * torch.log10(4.0 / mse.clamp_min(1e-10))
