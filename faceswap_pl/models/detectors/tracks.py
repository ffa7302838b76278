"""Face tracks: link the detections of consecutive (sampled) frames into tracks, cut at jumps.

One rule serves shard building (``data_pipelines``, every ``stride``-th frame) and swapping (every frame):

* the **jump** of a detection against a track is the largest move of any of the 5 keypoints since the
  track's previous frame, divided by the track's inter-ocular distance there (the distance between its two
  eye keypoints), so the same number holds at any resolution;
* detections and tracks are matched one to one, greedily, smallest jump first; a pair is only matched when
  its jump is at most ``max_jump``;
* an unmatched detection opens a new track; an unmatched track ends (a face missing from a frame ends its
  track, and a face-free frame ends every track).

:data:`DEFAULT_MAX_JUMP` is 0.5. Measured with YuNet on the demo videos (every face detected), the largest
natural move between frames is 0.28 eye distances at every frame, 0.36 at every 5th, 0.41 at every 6th and
0.65 at every 12th (``WolfgangLanger_Pexels.mp4``; ``single_face.mp4`` stays below 0.19): 0.5 keeps a shot
in one track up to a stride of 6 and cuts where the face lands elsewhere (a cut, another person, a detector
switch). Raise it for larger strides.

Example:
    >>> import numpy as np
    >>> eyes_nose_mouth = np.array([[40, 50], [80, 50], [60, 70], [45, 90], [75, 90]], np.float32)
    >>> keypoint_jump(eyes_nose_mouth, eyes_nose_mouth + [10, 0])   # 10 px at an eye distance of 40 px
    0.25
    >>> linker = TrackLinker(max_jump=0.5)
    >>> linker.update([eyes_nose_mouth]), linker.update([eyes_nose_mouth + 4]), linker.update([eyes_nose_mouth + 90])
    ([0], [0], [1])
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: the jump (largest keypoint move / inter-ocular distance) above which a track is cut (module docstring)
DEFAULT_MAX_JUMP = 0.5


def _points(face) -> np.ndarray:
    """(5, 2) keypoints of a :class:`~faceswap_pl.models.detectors.base.Face` or of a (5, 2) array."""
    return np.asarray(getattr(face, "keypoints", face), dtype=np.float64).reshape(5, 2)


def keypoint_jump(previous, current) -> float:
    """Largest keypoint move from ``previous`` to ``current`` over ``previous``'s inter-ocular distance.

    Both are :class:`~faceswap_pl.models.detectors.base.Face` records or (5, 2) keypoint arrays in ArcFace
    order (eyes first); the eye distance is floored at 1 px.
    """
    before, after = _points(previous), _points(current)
    eye_distance = max(float(np.linalg.norm(before[1] - before[0])), 1.0)
    return float(np.max(np.linalg.norm(after - before, axis=1))) / eye_distance


def match_faces(previous: Sequence, current: Sequence, max_jump: float) -> list[tuple[int, int]]:
    """Greedy one-to-one matching ``(previous index, current index)``, smallest jump first, jumps <= ``max_jump``."""
    costs = sorted((keypoint_jump(p, c), i, j) for i, p in enumerate(previous) for j, c in enumerate(current))
    used_previous: set[int] = set()
    used_current: set[int] = set()
    pairs = []
    for cost, i, j in costs:
        if cost > max_jump or i in used_previous or j in used_current:
            continue
        used_previous.add(i)
        used_current.add(j)
        pairs.append((i, j))
    return pairs


class TrackLinker:
    """Gives every detection of a frame a track number (module docstring for the rule).

    Args:
        max_jump: the largest jump, in inter-ocular distances, that continues a track.
    """

    def __init__(self, max_jump: float = DEFAULT_MAX_JUMP) -> None:
        if not max_jump > 0:
            raise ValueError(f"the track jump threshold must be positive, got {max_jump}")
        self.max_jump = float(max_jump)
        self.next_track = 0
        self._last: list[tuple[int, np.ndarray]] = []  # (track, keypoints) of the previous frame

    def update(self, faces: Sequence) -> list[int]:
        """The track numbers of ``faces`` (detections of the next frame), in their order.

        Tracks of the previous frame that no face continues end here; their numbers are never reused.
        """
        points = [_points(face) for face in faces]
        pairs = match_faces([p for _, p in self._last], points, self.max_jump)
        tracks: list[int | None] = [None] * len(points)
        for i, j in pairs:
            tracks[j] = self._last[i][0]
        for j, track in enumerate(tracks):
            if track is None:
                tracks[j], self.next_track = self.next_track, self.next_track + 1
        self._last = list(zip(tracks, points))
        return tracks  # type: ignore[return-value]

    def reset(self) -> None:
        """A gap (an undecodable or face-free frame): every track ends."""
        self._last = []
