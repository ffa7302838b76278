"""Shared fixtures. Zoo models must be fetched first (`faceswap-pl models fetch --all`, done by `make test`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


def need(name: str) -> Path:
    """Directory of a fetched zoo entry; fails (never skips) with the fetch command if missing."""
    from faceswap_pl import zoo

    return zoo.require(name)


def save_training_checkpoint(module, path: Path) -> Path:
    """``module`` (a FaceSwapModule) as a ``faceswap-pl fit`` checkpoint file, without running a Trainer."""
    import lightning as L
    import torch

    torch.save({"hyper_parameters": dict(module.hparams), "state_dict": module.state_dict(),
                "pytorch-lightning_version": L.__version__}, path)
    return path


def read_rgb(path: Path) -> np.ndarray:
    """An image file as an HxWx3 uint8 RGB array."""
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert image is not None, f"cannot read {path}"
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


@pytest.fixture(scope="session")
def media():
    """Callable: media file name -> path of the fetched file."""
    from faceswap_pl import zoo

    return zoo.media_path


@pytest.fixture(scope="session")
def demo_shards(tmp_path_factory):
    """The demo dataset (train/ and val/) at 64 px, built once per test session."""
    from data_pipelines import build_demo

    folder = tmp_path_factory.mktemp("demo")
    build_demo(folder, size=64, progress=False)
    return folder


@pytest.fixture(scope="session")
def randomize_batchnorm():
    """Callable ``(module, seed=0) -> module``: seeded random BatchNorm weights, biases and running stats.

    A fresh module's BatchNorms are the identity (1, 0, 0, 1); randomising them makes a checkpoint
    round trip prove that every statistic was really loaded.
    """
    import torch
    from torch import nn

    def apply(module, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for m in module.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    n = m.num_features
                    m.weight.copy_(0.5 + torch.rand(n, generator=g))
                    m.bias.copy_(0.1 * torch.randn(n, generator=g))
                    m.running_mean.copy_(0.1 * torch.randn(n, generator=g))
                    m.running_var.copy_(0.5 + torch.rand(n, generator=g))
                    m.num_batches_tracked.fill_(7)
        return module

    return apply


def yunet_align(image: np.ndarray, name: str, size: int = 112) -> tuple[np.ndarray, np.ndarray]:
    """The largest YuNet face of an RGB image aligned on its 5 points: (crop, 2x3 image->crop matrix).

    Uses the raw YuNet file (not the converted zoo entry: tests of other modules must not depend on
    the detector module); ``name`` names the image in failures.
    """
    import cv2

    from faceswap_pl import zoo
    from faceswap_pl.alignment import align_face

    yunet = zoo.cache_root() / "raw" / "yunet" / "face_detection_yunet_2023mar.onnx"
    assert yunet.is_file(), f"{yunet} is missing; run `faceswap-pl models fetch yunet`"
    h, w = image.shape[:2]
    detector = cv2.FaceDetectorYN.create(str(yunet), "", (w, h), 0.8)
    _, found = detector.detect(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    assert found is not None and len(found) >= 1, f"no face found in {name}"
    best = found[np.argmax(found[:, 2] * found[:, 3])]
    return align_face(image, best[4:14].reshape(5, 2), size)


#: media faces of six different people (the aligned Tom Hanks crop first, then faces found by YuNet)
ALIGNED_FACE_FILES = ("single_face.jpg", "0-f1-su-ph.jpg", "0-f15-hao-ph.jpg", "15-f13-anc-ph.jpg", "45-m7-di-ph.jpg")


@pytest.fixture(scope="session")
def aligned_faces(media):
    """(6, 3, 112, 112) float32 aligned real faces, RGB in [-1, 1], six distinct people.

    ``Tom_Hanks_54745.png`` (already aligned) and the largest YuNet face of each of
    ``ALIGNED_FACE_FILES`` aligned on its 5 points; needs the raw YuNet file (``faceswap-pl models
    fetch yunet``) and the media.
    """
    import torch

    crops = [read_rgb(media("Tom_Hanks_54745.png"))]
    crops += [yunet_align(read_rgb(media(name)), name)[0] for name in ALIGNED_FACE_FILES]
    return torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float() / 127.5 - 1.0
