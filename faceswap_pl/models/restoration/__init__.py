"""Restoration: frozen pretrained upscalers by name, and GHOST's trainable same-size face restorer.

* :mod:`.rrdbnet` — ESRGAN's RRDBNet as a plain torch module (BasicSR parameter names).
* :mod:`.realesrgan` — Real-ESRGAN x4plus: the zoo converter (from the ncnn files, read by
  :mod:`faceswap_pl.models.importers.ncnn`), tiling for large images, the frozen [-1, 1] adapter.
* :mod:`.restorer` — :class:`FaceRestorer`, the "super-resolution block" trained by
  ``faceswap-pl restoration fit``, with :func:`save_restorer` / :func:`load_restorer`.

Names (:func:`create_restoration`):
    ``realesrgan_x4plus``  Real-ESRGAN x4plus (RRDBNet 64/32/23, x4), BSD-3, from the zoo.

Example:
    >>> restoration_names()
    ['realesrgan_x4plus']
"""

from __future__ import annotations

from faceswap_pl.models.restoration.base import RESTORATION_MODELS, register_restoration
from faceswap_pl.models.restoration.realesrgan import RealESRGAN, load_rrdbnet, tiled_forward
from faceswap_pl.models.restoration.restorer import RESTORER_CKPT_KEY, FaceRestorer, load_restorer, save_restorer
from faceswap_pl.models.restoration.rrdbnet import RRDBNet

__all__ = ["RESTORATION_MODELS", "RESTORER_CKPT_KEY", "FaceRestorer", "RRDBNet", "RealESRGAN", "create_restoration",
           "load_restorer", "load_rrdbnet", "register_restoration", "restoration_names", "save_restorer",
           "tiled_forward"]


def restoration_names(pattern: str = "*") -> list[str]:
    """The registered names matching ``pattern`` (shell-style)."""
    return RESTORATION_MODELS.names(pattern)


def create_restoration(name: str, **kwargs):
    """A frozen pretrained restorer by name (see the package docstring).

    ``realesrgan_x4plus`` accepts ``tile: int | None``, ``overlap: int`` and ``clamp: bool``.

    Raises:
        UnknownNameError: ``name`` is not registered (the message lists the valid names).
        ModelNotFetchedError: the weights are not in the zoo cache.
    """
    return RESTORATION_MODELS.create(name, **kwargs)
