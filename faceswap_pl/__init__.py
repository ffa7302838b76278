"""faceswap_pl: a PyTorch Lightning experiment framework for one-shot face swapping (GHOST / AEI-Net).

The Python API (:mod:`faceswap_pl.api`) is reachable from here; it is imported on first use, so that
``import faceswap_pl`` and the command line's start stay light::

    from faceswap_pl import Swapper
    Swapper.load("models:/demo-generator@champion").swap_image("me.jpg", "photo.jpg", out="swapped.png")
"""

from faceswap_pl.version import __version__

API = ("Swapper", "evaluate", "export_checkpoint")  # `faceswap_pl.export` is the export package
__all__ = [*API, "__version__"]


def __getattr__(name: str):
    if name in API:
        from faceswap_pl import api  # lazy: the API imports torch, the models and the swap pipeline

        return getattr(api, name)
    raise AttributeError(f"module 'faceswap_pl' has no attribute {name!r}")
