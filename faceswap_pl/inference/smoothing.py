"""Face tracks over video frames and keypoint smoothing within them, as a stream with a short look-ahead.

Each frame's chosen faces are linked to the tracks of the previous frame by
:class:`faceswap_pl.models.detectors.tracks.TrackLinker`, the rule shard building uses too: a face continues
a track unless a keypoint moved by more than ``jump`` inter-ocular distances since the previous frame (0.5 by
default; natural head motion on the demo videos stays below 0.28 between frames). GHOST splits at 5 px; a
fraction of the eye distance holds at any resolution. A face missing from a frame ends its track (a
face-free frame ends every track). Within a track the keypoints of frame t are the mean of frames
t-radius .. t+radius that belong to the same track (GHOST: radius 2), so smoothing never pulls a face
towards where another face — or the same face before a cut — was.

:class:`KeypointSmoother` takes frames one at a time and hands each back ``radius`` frames later,
so memory holds ``radius + 1`` frames, whatever the video's length.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from faceswap_pl.models.detectors import Face
from faceswap_pl.models.detectors.tracks import DEFAULT_MAX_JUMP, TrackLinker


@dataclass
class TrackedFace:
    """One face of a frame: its detection, its track and its smoothed keypoints (5, 2)."""

    face: Face
    track: int
    keypoints: np.ndarray


class KeypointSmoother:
    """Streaming tracker + moving average.

    Args:
        radius: frames averaged on each side (0 turns smoothing off; tracks are still kept).
        jump: keypoint move, as a fraction of the inter-ocular distance, that starts a new track.
    """

    def __init__(self, radius: int = 2, jump: float = DEFAULT_MAX_JUMP) -> None:
        if radius < 0:
            raise ValueError(f"smoothing radius must be >= 0, got {radius}")
        self.radius = int(radius)
        self.linker = TrackLinker(jump)
        # frames still inside someone's window: (item, [(track, face)], {track: raw keypoints}); the first
        # `radius` entries are already handed out (kept for their keypoints only)
        self._window: deque[list[Any]] = deque()
        self._emitted = 0  # how many entries at the head of the window were handed out

    def _assign(self, faces: list[Face]) -> list[tuple[int, Face]]:
        return list(zip(self.linker.update(faces), faces))

    def _smoothed(self, index: int) -> list[TrackedFace]:
        """Tracked faces of window entry ``index``, keypoints averaged over its track's frames in range."""
        _, faces, _ = self._window[index]
        result = []
        for track, face in faces:
            points = [face.keypoints]
            for step in (-1, 1):  # walk outwards while the track continues
                for offset in range(1, self.radius + 1):
                    neighbour = index + step * offset
                    if not 0 <= neighbour < len(self._window) or track not in self._window[neighbour][2]:
                        break
                    points.append(self._window[neighbour][2][track])
            result.append(TrackedFace(face, track, np.mean(points, axis=0).astype(np.float32)))
        return result

    def _pop_ready(self, final: bool) -> list[tuple[Any, list[TrackedFace]]]:
        ready = []
        while self._emitted < len(self._window) and (final or len(self._window) - self._emitted > self.radius):
            entry = self._window[self._emitted]
            ready.append((entry[0], self._smoothed(self._emitted)))
            entry[0] = None  # the frame itself is no longer held
            self._emitted += 1
            while self._emitted > self.radius:
                self._window.popleft()
                self._emitted -= 1
        return ready

    def push(self, item: Any, faces: list[Face]) -> list[tuple[Any, list[TrackedFace]]]:
        """Add a frame (``item``, anything) with its chosen faces; returns the frames now ready, in order."""
        assigned = self._assign(faces)
        self._window.append([item, assigned, {track: face.keypoints for track, face in assigned}])
        return self._pop_ready(final=False)

    def flush(self) -> list[tuple[Any, list[TrackedFace]]]:
        """The frames still held, at the end of the stream."""
        return self._pop_ready(final=True)
