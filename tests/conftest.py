"""Shared fixtures. Zoo models must be fetched first (`faceswap-pl models fetch --all`, done by `make test`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


def need(name: str) -> Path:
    """Directory of a fetched zoo entry; fails (never skips) with the fetch command if missing."""
    from faceswap_pl import zoo

    return zoo.require(name)


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
