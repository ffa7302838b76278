"""Images as RGB uint8 arrays: decoding bytes, reading files (one decoder and one reader for every caller).

Example:
    >>> import numpy as np, cv2
    >>> ok, png = cv2.imencode(".png", np.zeros((4, 4, 3), np.uint8))
    >>> decode_image(png.tobytes()).shape
    (4, 4, 3)
    >>> decode_image(b"not an image") is None
    True
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from faceswap_pl.errors import MediaError

_REDUCED = {2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4, 8: cv2.IMREAD_REDUCED_COLOR_8}


def decode_image(data: bytes, reduce: int = 1) -> np.ndarray | None:
    """Encoded bytes (JPEG, PNG, ...) -> (H, W, 3) uint8 RGB, or None when they do not decode.

    ``reduce`` 2, 4 or 8 decodes at that fraction of the size (libjpeg's DCT scaling for JPEGs: much faster
    than decoding in full and resizing, and an area-like filter).
    """
    buffer = np.frombuffer(data, np.uint8)
    if buffer.size == 0:
        return None
    if reduce == 1:
        return cv2.imdecode(buffer, cv2.IMREAD_COLOR_RGB)
    image = cv2.imdecode(buffer, _REDUCED[reduce])
    return None if image is None else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def encode_jpeg(image: np.ndarray, quality: int = 95) -> bytes:
    """(H, W, 3) uint8 RGB -> JPEG bytes."""
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:  # pragma: no cover - OpenCV encodes any uint8 image
        raise RuntimeError("JPEG encoding failed")
    return data.tobytes()


def read_image(path: str | Path, what: str = "image") -> np.ndarray:
    """RGB uint8 (H, W, 3) of an image file; :class:`MediaError` naming the file when it is missing or unreadable."""
    path = Path(path)
    if not path.is_file():
        raise MediaError(f"The {what} {path} does not exist; check the path.")
    data = np.fromfile(path, dtype=np.uint8)
    image = decode_image(data.tobytes())
    if image is None:
        raise MediaError(f"The {what} {path} is not a readable image ({data.size} bytes; corrupt or another "
                         f"format); pass a JPEG or PNG file.")
    return image
