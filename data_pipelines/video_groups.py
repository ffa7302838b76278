"""Face tracks in a video: link detections over sampled frames, cut at jumps and gaps, emit groups.

Every ``stride``-th frame is decoded and searched for faces (score >= ``min_score``). Detections are
linked into tracks by :class:`faceswap_pl.models.detectors.tracks.TrackLinker`, the rule swapping uses too:
a detection continues a track when no keypoint moved by more than ``track_jump`` inter-ocular distances
since the track's previous sampled frame (matched greedily, smallest jump first). A track ends at a jump,
at a sampled frame where its face is missing, and at the end of the video; a reappearing face opens
a new track. Frames of a track whose crop fails the filters (size, blur) are left out of the track's
groups (and reported), without cutting it.

A track is emitted as groups of at most ``max_frames_per_group`` frames as it grows (so memory does
not grow with video length); tracks with fewer than ``min_track_frames`` kept frames are dropped
and reported as "track too short".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import cv2

from data_pipelines.faces import NO_FACE, TRACK_TOO_SHORT, UNREADABLE_VIDEO, Crop, FaceSettings, crop_face
from faceswap_pl.models.detectors.tracks import DEFAULT_MAX_JUMP, TrackLinker


@dataclass
class _Track:
    buffer: list[Crop] = field(default_factory=list)
    kept: int = 0                      # frames kept so far (buffered + emitted)
    number: int | None = None          # k of "#track<k>", assigned at the first emitted group


class FaceTracker:
    """Links per-frame detections into tracks and hands finished groups to ``emit(track_number, crops)``."""

    def __init__(self, emit: Callable[[int, list[Crop]], None], track_jump: float = DEFAULT_MAX_JUMP,
                 max_frames_per_group: int = 32, min_track_frames: int = 2) -> None:
        self.emit = emit
        self.linker = TrackLinker(track_jump)
        self.max_frames = max_frames_per_group
        self.min_frames = min_track_frames
        self.active: dict[int, _Track] = {}     # by the linker's track number
        self.next_number = 0
        self.too_short: list[list[Crop]] = []   # the kept crops of each dropped track

    def update(self, faces: list, crops: list[Crop | None]) -> None:
        """One sampled frame: ``faces`` detected and, per face, its crop (None when filtered out)."""
        tracks = self.linker.update(faces)
        for track in sorted(set(self.active) - set(tracks)):
            self._finish(self.active.pop(track))
        for track, crop in zip(tracks, crops):
            self._extend(self.active.setdefault(track, _Track()), crop)

    def gap(self) -> None:
        """A sampled frame that could not be decoded: every track ends."""
        self.close()

    def close(self) -> None:
        """End of the video: finish every open track."""
        for track in self.active.values():
            self._finish(track)
        self.active = {}
        self.linker.reset()

    def _extend(self, track: _Track, crop: Crop | None) -> None:
        if crop is not None:
            track.buffer.append(crop)
            track.kept += 1
            if len(track.buffer) >= self.max_frames and track.kept >= self.min_frames:
                self._emit(track)

    def _emit(self, track: _Track) -> None:
        if track.number is None:
            track.number = self.next_number
            self.next_number += 1
        self.emit(track.number, track.buffer)
        track.buffer = []

    def _finish(self, track: _Track) -> None:
        if track.kept == 0:
            return
        if track.kept < self.min_frames:
            self.too_short.append(track.buffer)
            return
        if track.buffer:
            self._emit(track)


def track_video(path: Path, source: str, settings: FaceSettings, detector, stride: int, track_jump: float,
                max_frames_per_group: int, min_track_frames: int,
                emit: Callable[[int, list[Crop]], None]) -> list[dict]:
    """Detect, filter and track the faces of one video; groups go to ``emit``; returns skipped entries.

    Skipped entries: the whole video when it cannot be decoded or shows no face; otherwise one entry
    per reason listing the frame numbers left out (filtered crops, too-short tracks).
    """
    capture = cv2.VideoCapture(str(path))
    tracker = FaceTracker(emit, track_jump, max_frames_per_group, min_track_frames)
    decoded = 0
    any_face = False
    dropped: dict[str, list[int]] = {}
    try:
        if not capture.isOpened():
            return [{"source": source, "reason": UNREADABLE_VIDEO}]
        index = 0
        while capture.grab():
            if index % stride == 0:
                ok, bgr = capture.retrieve()
                if not ok or bgr is None:
                    tracker.gap()
                else:
                    decoded += 1
                    image = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                    faces = [f for f in detector.detect(image) if f.score >= settings.min_score]
                    any_face = any_face or bool(faces)
                    crops = []
                    for face in faces:
                        crop, reason = crop_face(image, face, settings, source, index)
                        crops.append(crop)
                        if reason is not None:
                            dropped.setdefault(reason, []).append(index)
                    tracker.update(faces, crops)
            index += 1
        tracker.close()
    finally:
        capture.release()
    if decoded == 0:
        return [{"source": source, "reason": UNREADABLE_VIDEO}]
    if not any_face:
        return [{"source": source, "reason": NO_FACE, "frames_searched": decoded}]
    skipped = [{"source": source, "reason": reason, "frames": frames} for reason, frames in sorted(dropped.items())]
    if tracker.too_short:
        frames = sorted(c.frame_index for track in tracker.too_short for c in track)
        skipped.append({"source": source, "reason": TRACK_TOO_SHORT, "frames": frames,
                        "tracks": len(tracker.too_short)})
    return skipped
