"""Differentiable landmark models: one interface (:mod:`.base`), one registry, the MediaPipe topology.

Every model maps aligned face crops (N, 3, S, S), RGB in [-1, 1] on the ArcFace template scaled to S, to
landmarks (N, K, 2), (x, y) in [0, 1] crop coordinates; gradients reach the input. Which index is which
point of the face is in :mod:`.topology`.

Names (:func:`create_landmark_model`):
    ``mediapipe_mesh``   MediaPipe face mesh, 468 points (zoo)
    ``mediapipe_iris``   MediaPipe iris on both eyes: 2 x (71 eye/brow + 5 iris) = 152 points (zoo)
    ``awing_fan``        AdaptiveWing FAN (4 hourglasses, 98 WFLW points) from a user ``WFLW_4HG.pth``

A new model is a module here that subclasses :class:`~.base.LandmarkModel` and registers its factory with
``@register_landmarks("name")``, plus one import line below.

Example:
    >>> landmark_names("mediapipe_*")
    ['mediapipe_iris', 'mediapipe_mesh']
"""

from __future__ import annotations

from faceswap_pl.models.landmarks import awing, mediapipe  # noqa: F401 (registers the models)
from faceswap_pl.models.landmarks.base import LANDMARK_MODELS, LandmarkModel, register_landmarks

__all__ = ["LANDMARK_MODELS", "LandmarkModel", "create_landmark_model", "landmark_names", "register_landmarks"]


def landmark_names(pattern: str = "*") -> list[str]:
    """The registered names matching ``pattern`` (shell-style)."""
    return LANDMARK_MODELS.names(pattern)


def create_landmark_model(name: str, **kwargs) -> LandmarkModel:
    """A frozen landmark model by name (see the package docstring); kwargs go to its factory.

    Raises:
        UnknownNameError: ``name`` is not registered (the message lists the valid names).
    """
    return LANDMARK_MODELS.create(name, **kwargs)
