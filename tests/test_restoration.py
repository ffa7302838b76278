"""Known-answer tests of the super-resolution / restoration block (Real-ESRGAN x4plus, RRDBNet).

The reference is ncnn itself (pyncnn) running the shipped ``realesrgan-x4plus.param/.bin``. Inputs are
small real face crops (32x32 -> 128x128) so the 16.7M-parameter network stays fast on 2 CPU cores.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import need, read_rgb

from faceswap_pl.errors import NcnnModelError, UnknownNameError
from faceswap_pl.models.restoration import RealESRGAN, RRDBNet, create_restoration, tiled_forward
from faceswap_pl.models.restoration.rrdbnet_ncnn import read_ncnn_rrdbnet

NAME = "realesrgan_x4plus"
PARAM, BIN = "realesrgan-x4plus.param", "realesrgan-x4plus.bin"


def raw_dir() -> Path:
    """The sha256-verified ncnn files kept by the zoo fetch (fails, never skips, when missing)."""
    from faceswap_pl import zoo

    need(NAME)
    folder = zoo.cache_root() / "raw" / NAME
    assert (folder / PARAM).is_file() and (folder / BIN).is_file(), (
        f"the raw ncnn files are missing from {folder}; run `faceswap-pl models fetch {NAME}` again")
    return folder


def to_tensor01(image: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 RGB -> (1, 3, H, W) float in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float() / 255.0


def high_freq_energy(image: np.ndarray) -> float:
    """Mean squared Laplacian of the grey image; ``image`` is (H, W, 3) float in [0, 1]."""
    import cv2

    grey = cv2.cvtColor(image.astype(np.float32), cv2.COLOR_RGB2GRAY)
    return float(np.mean(cv2.Laplacian(grey, cv2.CV_32F) ** 2))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two images in [0, 1]."""
    return float(10.0 * np.log10(1.0 / np.mean((a.astype(np.float64) - b) ** 2)))


@pytest.fixture(scope="module")
def model():
    need(NAME)
    return create_restoration(NAME)


@pytest.fixture(scope="module")
def face(media):
    """A real face: ``hr`` (128, 128, 3) uint8 RGB and its 4x area-downscaled ``lr`` (32, 32, 3)."""
    import cv2

    crop = read_rgb(media("single_face.jpg"))[120:376, 170:426]  # 256x256 around the face
    hr = cv2.resize(crop, (128, 128), interpolation=cv2.INTER_AREA)
    return {"hr": hr, "lr": cv2.resize(hr, (32, 32), interpolation=cv2.INTER_AREA)}


@pytest.fixture(scope="module")
def sr_face(model, face) -> np.ndarray:
    """Raw (unclamped) RRDBNet output on ``face['lr']``: (128, 128, 3) float, [0, 1] units."""
    with torch.no_grad():
        return model.net(to_tensor01(face["lr"]))[0].permute(1, 2, 0).numpy()


def test_converted_weights_are_the_ncnn_weights(model):
    config, state = read_ncnn_rrdbnet(raw_dir() / PARAM, raw_dir() / BIN)
    assert config == {"num_in_ch": 3, "num_out_ch": 3, "num_feat": 64, "num_grow": 32, "num_blocks": 23, "scale": 4}
    assert state["conv_first.weight"].dtype == np.float16  # shipped as fp16; the cache keeps it lossless
    loaded = model.net.state_dict()
    assert set(state) == set(loaded)
    for key, value in state.items():
        assert torch.equal(loaded[key], torch.from_numpy(value).float()), key
    assert sum(p.numel() for p in model.parameters()) == 16_697_987


def test_torch_matches_ncnn_reference(face, sr_face):
    import ncnn

    net = ncnn.Net()
    net.opt.num_threads = 1
    for flag in ("use_fp16_storage", "use_fp16_packed", "use_fp16_arithmetic", "use_bf16_storage"):
        setattr(net.opt, flag, False)  # fp32 everywhere; ncnn's defaults gave the same numbers here
    assert net.load_param(str(raw_dir() / PARAM)) == 0 and net.load_model(str(raw_dir() / BIN)) == 0
    chw = np.ascontiguousarray(face["lr"].transpose(2, 0, 1), dtype=np.float32) / 255.0  # RGB [0, 1]
    mat = ncnn.Mat(chw)  # keep `chw` alive: the Mat borrows its memory
    extractor = net.create_extractor()
    extractor.input("data", mat)
    ret, out = extractor.extract("output")
    assert ret == 0
    reference = np.array(out).transpose(1, 2, 0)
    assert reference.shape == sr_face.shape == (128, 128, 3)
    # measured: max abs diff 6.5e-6, mean 2.4e-7 ([0, 1] pixel units; 3.4e-6 on a 24x24 crop). ncnn's
    # default options (fp16 storage on) gave the identical output on this x86 CPU.
    assert np.abs(sr_face - reference).max() <= 1e-4


def test_sr_restores_detail_consistent_with_input(face, sr_face):
    """A working x4 SR adds the detail bicubic cannot, yet stays consistent with its input.

    Measured on this crop: high-frequency energy HR 0.0118, SR 0.0084, bicubic 0.0005; area-downscaled
    SR vs LR 27.2 dB. PSNR to the original is 22.5 dB for SR vs 24.6 dB for bicubic: Real-ESRGAN is a
    GAN (perceptual) model and loses to bicubic on PSNR on all 25 face / degradation pairs tried
    (clean, bicubic, blur, noise, JPEG), so PSNR is only checked for sanity here.
    """
    import cv2

    hr = face["hr"].astype(np.float32) / 255.0
    sr = np.clip(sr_face, 0.0, 1.0)
    bicubic = cv2.resize(face["lr"], (128, 128), interpolation=cv2.INTER_CUBIC).astype(np.float32) / 255.0
    e_hr, e_sr, e_bic = high_freq_energy(hr), high_freq_energy(sr), high_freq_energy(bicubic)
    assert e_hr / 3 < e_sr < e_hr * 3, (e_hr, e_sr)  # SR detail on the scale of the original's
    assert e_bic < e_hr / 10  # bicubic's is 20x lower
    down = cv2.resize(sr, (32, 32), interpolation=cv2.INTER_AREA)
    assert psnr(down, face["lr"].astype(np.float32) / 255.0) > 25.0
    assert psnr(sr, hr) > 20.0


def test_gradients_reach_input_and_no_param_requires_grad(model, face):
    assert not any(p.requires_grad for p in model.parameters())
    model.train()
    assert not model.training  # frozen: stays in eval mode
    x = (to_tensor01(face["lr"][12:20, 12:20]) * 2 - 1).requires_grad_(True)  # (1, 3, 8, 8) in [-1, 1]
    y = model(x)
    assert y.shape == (1, 3, 32, 32) and y.min() >= -1 and y.max() <= 1
    y.square().mean().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.parameters())


def test_tiled_forward_stitches_exactly():
    """With a 3x3-conv upscaler (context radius 1) an overlap >= 1 must reproduce the untiled output."""
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 3, 3, padding=1)

    def upscale(t):
        return F.interpolate(conv(t), scale_factor=4, mode="nearest")

    x = torch.randn(2, 3, 23, 37)
    with torch.no_grad():
        full = upscale(x)
        tiled = tiled_forward(upscale, x, 4, tile=10, overlap=1)
        no_context = tiled_forward(upscale, x, 4, tile=10, overlap=0)
    assert tiled.shape == full.shape == (2, 3, 92, 148)
    assert torch.allclose(tiled, full, atol=1e-6)
    assert not torch.allclose(no_context, full, atol=1e-3)  # the overlap matters


def test_tiling_real_model_close_to_untiled(model, face):
    """Real-ESRGAN's context is wide (~350 px in theory), so tiles differ slightly near their seams.

    Measured ([0, 1] units) on this 16x32 strip, tile 16: mean / max abs diff 0.0081 / 0.195 (overlap 4),
    0.0042 / 0.113 (overlap 8), 0.0024 / 0.040 (overlap 12); on a 32x32 face with four tiles,
    0.0096 / 0.215 (overlap 8).
    """
    strip = to_tensor01(face["lr"][8:24]) * 2 - 1  # (1, 3, 16, 32): two tiles of 16
    with torch.no_grad():
        full = model(strip)
        tiled = RealESRGAN(model.net, tile=16, overlap=8).freeze()(strip)
    diff = (tiled - full).abs() / 2  # [0, 1] pixel units
    assert tiled.shape == full.shape == (1, 3, 64, 128)
    assert diff.mean() < 0.01 and diff.max() < 0.25, (diff.mean(), diff.max())


def _write(tmp_path: Path, param_text: str, bin_bytes: bytes | None = None) -> tuple[Path, Path]:
    (tmp_path / PARAM).write_text(param_text)
    (tmp_path / BIN).write_bytes((raw_dir() / BIN).read_bytes() if bin_bytes is None else bin_bytes)
    return tmp_path / PARAM, tmp_path / BIN


@pytest.mark.parametrize("edit, message", [
    (lambda t: "7767518" + t[7:], "magic"),
    (lambda t: t.replace("Concat_6                 3 1 703_splitncnn_5 705_splitncnn_2",
                         "Concat_6                 3 1 705_splitncnn_2 703_splitncnn_5"), "Concat_6"),
    (lambda t: t.replace("-23301=2,2.000000e-01,1.000000e+00", "-23301=2,5.000000e-01,1.000000e+00", 1),
     "Eltwise SUM"),
    (lambda t: t.replace("Resize_1177              1 1 1878 1883 0=1", "Resize_1177              1 1 1878 1883 0=2"),
     "nearest x2"),
    (lambda t: "\n".join(line for line in t.splitlines() if " Concat_3 " not in line), "declares"),
])
def test_mismatched_param_gives_clear_error(tmp_path, edit, message):
    text = (raw_dir() / PARAM).read_text()
    edited = edit(text)
    assert edited != text
    param, bin_path = _write(tmp_path, edited, b"")
    with pytest.raises(NcnnModelError, match=message):
        read_ncnn_rrdbnet(param, bin_path)


@pytest.mark.parametrize("cut, message", [(-100, "truncated"), (8, "left over")])
def test_mismatched_bin_gives_clear_error(tmp_path, cut, message):
    data = (raw_dir() / BIN).read_bytes()
    data = data[:cut] if cut < 0 else data + bytes(cut)
    param, bin_path = _write(tmp_path, (raw_dir() / PARAM).read_text(), data)
    with pytest.raises(NcnnModelError, match=message):
        read_ncnn_rrdbnet(param, bin_path)


def test_unknown_name_lists_valid_names():
    with pytest.raises(UnknownNameError, match="realesrgan_x4plus"):
        create_restoration("esrgan_x8")


def test_tiny_rrdbnet_trains_with_and_without_checkpointing():
    torch.manual_seed(0)
    net = RRDBNet(num_feat=8, num_grow=4, num_blocks=2, scale=2)
    assert net.config()["scale"] == 2
    assert [name for name, _ in net.named_children()][-3:] == ["conv_up1", "conv_hr", "conv_last"]
    x = torch.rand(2, 3, 6, 5)
    net.train()
    grads = []
    for use_checkpoint in (False, True):
        net.zero_grad()
        net.grad_checkpoint = use_checkpoint
        out = net(x)
        assert out.shape == (2, 3, 12, 10)
        F.l1_loss(out, torch.zeros_like(out)).backward()
        grads.append(torch.cat([p.grad.flatten() for p in net.parameters()]))
    assert torch.allclose(grads[0], grads[1], atol=1e-6) and grads[0].abs().sum() > 0
    with pytest.raises(ValueError, match="power of two"):
        RRDBNet(scale=3)
