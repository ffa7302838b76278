"""Identity encoders: one interface (:mod:`.base`), one registry, one module per network.

Every encoder maps aligned face crops (N, 3, S, S), RGB in [-1, 1] on the ArcFace template scaled to S,
to (N, D) L2-normalised embeddings, and :meth:`~.base.IdentityEncoder.features` to the raw features.

Names (:func:`create_identity_encoder`):
    ``sface``                  OpenCV zoo SFace, 128-d (zoo; the offline default for the identity loss)
    ``facenet``                FaceNet Inception-ResNet-v1, 128-d (zoo; the evaluation recognizer)
    ``arcface_iresnet50``      arcface_torch iresnet50, 512-d, from a user ``backbone.pth``
    ``arcface_iresnet100``     arcface_torch iresnet100, 512-d, from a user ``backbone.pth`` (GHOST's)
    ``onnx:<path>``            an insightface ONNX recognizer (``w600k_r50.onnx``, ``glintr100.onnx``)

A new encoder is a module here that subclasses :class:`~.base.IdentityEncoder` and registers its
factory with ``@register_identity("name")``, plus one import line below.

Example:
    >>> identity_names("arcface*")
    ['arcface_iresnet100', 'arcface_iresnet50']
"""

from __future__ import annotations

from faceswap_pl.models.identity import arcface, facenet, onnx, sface  # noqa: F401 (registers the encoders)
from faceswap_pl.models.identity.base import (
    IDENTITY_ENCODERS,
    IDENTITY_RESIZES,
    IdentityEncoder,
    check_identity_resize,
    register_identity,
)

__all__ = ["IDENTITY_ENCODERS", "IDENTITY_RESIZES", "IdentityEncoder", "check_identity_resize", "create_identity_encoder",
           "identity_names", "register_identity"]


def identity_names(pattern: str = "*") -> list[str]:
    """The registered names matching ``pattern`` (shell-style), ``onnx:<path>`` included."""
    return IDENTITY_ENCODERS.names(pattern)


def create_identity_encoder(name: str, **kwargs) -> IdentityEncoder:
    """A frozen identity encoder by name (see the package docstring); kwargs go to its factory.

    Raises:
        UnknownNameError: ``name`` is not registered (the message lists the valid names).
    """
    return IDENTITY_ENCODERS.create(name, **kwargs)
