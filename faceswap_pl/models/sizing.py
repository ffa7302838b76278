"""Size options shared by the AEI-Net parts: image size, number of levels, width multiplier.

The generator starts at 2x2 (a kernel-2 ConvTranspose on the identity vector) and doubles the
resolution after every AAD residual block, so a model for ``image_size`` S has
``num_levels(S) = log2(S)`` levels at 2, 4, ..., S pixels (8 levels at GHOST's 256 px). Every
encoder returns one attribute map per level, coarsest first.

Channel counts are functions of a level's *resolution* (not of its depth from the input), so a
64-px model has the same 2..64-px levels as the 256-px model and a 512-px model adds one finer
level. ``width`` multiplies every channel count; ``width=1`` is GHOST exactly.
"""

from __future__ import annotations

import math

from faceswap_pl.errors import ModelOptionError

IMAGE_SIZES = (64, 128, 256, 512)
MAX_WIDTH = 4.0


def check_image_size(image_size: int) -> int:
    """Return ``image_size`` if supported, else raise :class:`ModelOptionError` listing the choices."""
    if isinstance(image_size, bool) or image_size not in IMAGE_SIZES:
        raise ModelOptionError(
            f"image_size {image_size!r} is not supported; valid sizes: "
            f"{', '.join(map(str, IMAGE_SIZES))} (GHOST: 256)."
        )
    return int(image_size)


def check_width(width: float) -> float:
    """Return ``width`` as a float if ``0 < width <= MAX_WIDTH``, else raise :class:`ModelOptionError`."""
    try:
        value = float(width)
    except (TypeError, ValueError):
        value = math.nan
    if isinstance(width, bool) or not 0.0 < value <= MAX_WIDTH:
        raise ModelOptionError(
            f"width {width!r} is not valid; use a number in (0, {MAX_WIDTH:g}], e.g. 0.125, 0.25, 0.5, "
            "1.0 (GHOST) or 2.0."
        )
    return value


def check_positive_int(value: int, name: str, examples: str) -> int:
    """Return ``value`` if it is an int >= 1, else raise :class:`ModelOptionError` naming ``examples``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ModelOptionError(f"{name} {value!r} is not valid; use an integer >= 1 ({examples}).")
    return value


def num_levels(image_size: int) -> int:
    """Number of attribute / generator levels (2, 4, ..., ``image_size`` px): ``log2(image_size)``."""
    return int(math.log2(check_image_size(image_size)))


def level_resolutions(levels: int) -> list[int]:
    """Side length of each level, coarsest first: ``[2, 4, ..., 2**levels]``."""
    return [2 ** (k + 1) for k in range(levels)]


def scaled(channels: int, width: float) -> int:
    """``channels * width`` rounded half up, at least 1."""
    return max(1, int(channels * width + 0.5))
