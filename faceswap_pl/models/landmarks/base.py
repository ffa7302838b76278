"""The landmark-model interface and its registry.

Every model takes aligned face crops — (N, 3, S, S) RGB in [-1, 1] on the ArcFace template scaled
to S — and returns landmarks (N, K, 2) as (x, y) in [0, 1] crop coordinates (x / S, y / S), so the
same numbers hold at any crop size. Models may also expose extra outputs (depth, heatmaps) through
their own methods. Gradients reach the input.
"""

from __future__ import annotations

import torch

from faceswap_pl.models.frozen import FrozenModule
from faceswap_pl.registry import Registry


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


#: the landmark models by name (implementations register themselves; see the package docstring)
LANDMARK_MODELS = Registry("landmark model")
register_landmarks = LANDMARK_MODELS.register
