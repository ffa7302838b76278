"""Differentiable landmark models behind one interface, in one registry.

Every model takes aligned face crops — (N, 3, S, S) RGB in [-1, 1] on the ArcFace template scaled
to S — and returns landmarks (N, K, 2) as (x, y) in [0, 1] crop coordinates (x / S, y / S), so the
same numbers hold at any crop size. Models may also expose extra outputs (depth, heatmaps) through
their own methods. Gradients reach the input.

Names:
    ``mediapipe_mesh``   MediaPipe face mesh, 468 points (zoo)
    ``mediapipe_iris``   MediaPipe iris on both eyes: 2 x (71 eye/brow + 5 iris) = 152 points (zoo)
    ``awing_fan``        AdaptiveWing FAN (4 hourglasses, 98 WFLW points) from a user ``WFLW_4HG.pth``
"""

from __future__ import annotations

from typing import Callable

import torch

from faceswap_pl.errors import UnknownNameError
from faceswap_pl.models.frozen import FrozenModule


class LandmarkModel(FrozenModule):
    """Interface: ``forward(x) -> (N, K, 2)`` in [0, 1] crop coordinates.

    ``eye_indices`` names the points the eye loss compares (for AWing: the two pupils 96 and 97).
    """

    num_points: int = 0
    eye_indices: tuple[int, ...] = ()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def eye_features(self, x: torch.Tensor) -> torch.Tensor:
        """What the eye loss compares: by default the ``eye_indices`` points, (N, E, 2) in [0, 1]."""
        return self(x)[:, list(self.eye_indices)]


_FACTORIES: dict[str, Callable[..., LandmarkModel]] = {}


def register_landmarks(name: str):
    def wrap(factory):
        _FACTORIES[name] = factory
        return factory

    return wrap


def _load_factories() -> None:
    from faceswap_pl.models import awing, mediapipe  # noqa: F401


def landmark_names() -> list[str]:
    _load_factories()
    return sorted(_FACTORIES)


def create_landmark_model(name: str, **kwargs) -> LandmarkModel:
    """Build a frozen landmark model by registry name (see the module docstring)."""
    _load_factories()
    if name not in _FACTORIES:
        raise UnknownNameError(f"Unknown landmark model '{name}'; valid names: {', '.join(landmark_names())}.")
    return _FACTORIES[name](**kwargs)
