"""Extraction: one unit (identity folder, video, loose still) -> cached groups of aligned face crops.

Runs inside worker processes. Each unit's result goes to ``<work>/<digest>/``: one pickle per group
(JPEG bytes, landmarks, scores, frame numbers, optional embeddings) and ``done.json`` (the group
summary and the unit's skipped inputs). It is written to ``<digest>.partial/`` and renamed when
complete, so a killed build leaves either a finished unit or nothing; the digest covers the unit's
files (path, size, mtime) and every extraction setting, so a rerun reuses exactly the units whose
inputs and settings did not change.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

from data_pipelines.faces import (
    NO_FACE,
    UNREADABLE_IMAGE,
    Crop,
    FaceSettings,
    crop_face,
    detect_faces,
    get_detector,
    main_face,
    readable_image,
)
from data_pipelines.sources import Unit
from data_pipelines.video_groups import track_video
from faceswap_pl.imageio import decode_image
from faceswap_pl.models.identity import create_identity_encoder

EXTRACT_VERSION = 2
DONE = "done.json"
EMBED_BATCH = 32


@dataclass(frozen=True)
class ExtractSettings:
    """Everything that decides a unit's groups (the cache key)."""

    faces: FaceSettings = field(default_factory=FaceSettings)
    video_stride: int = 5
    max_frames_per_group: int = 32
    track_jump: float = 0.5
    min_track_frames: int = 2
    embeddings: str | None = None

    def key(self) -> dict:
        return {"version": EXTRACT_VERSION, **asdict(self)}


def init_worker() -> None:
    """Process initializer: one thread per worker for OpenCV and torch (the workers are the parallelism)."""
    cv2.setNumThreads(1)
    try:
        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover - torch is a dependency
        pass


def unit_dir(work_dir: Path, unit: Unit, settings: ExtractSettings) -> Path:
    return Path(work_dir) / unit.digest(settings.key())


def cached_summary(work_dir: Path, unit: Unit, settings: ExtractSettings) -> dict | None:
    """The summary of a unit finished by an earlier (possibly killed) run, or None."""
    done = unit_dir(work_dir, unit, settings) / DONE
    if done.is_file():
        try:
            return json.loads(done.read_text())
        except (OSError, ValueError):
            return None
    return None


def load_group(work_dir: Path, digest: str, local: int) -> dict:
    """A cached group: ``identity_name, source, jpeg, landmarks, scores, frame_indices, embeddings``."""
    with open(Path(work_dir) / digest / f"g{local:05d}.pkl", "rb") as handle:
        return pickle.load(handle)


class _GroupSink:
    """Writes a unit's groups into its partial folder as they are produced."""

    def __init__(self, folder: Path, embeddings: str | None) -> None:
        self.folder = folder
        self.embeddings = embeddings
        self.summary: list[dict] = []

    def add(self, identity_name: str, crops: list[Crop]) -> None:
        local = len(self.summary)
        record = {
            "identity_name": identity_name,
            "source": sorted({c.source for c in crops}),
            "jpeg": [c.jpeg for c in crops],
            "landmarks": np.stack([c.landmarks for c in crops]).astype(np.float32),
            "scores": [round(float(c.score), 4) for c in crops],
            "frame_indices": [c.frame_index for c in crops if c.frame_index is not None],
            "embeddings": embed([c.jpeg for c in crops], self.embeddings) if self.embeddings else None,
        }
        with open(self.folder / f"g{local:05d}.pkl", "wb") as handle:
            pickle.dump(record, handle, protocol=pickle.HIGHEST_PROTOCOL)
        self.summary.append({"identity_name": identity_name, "local": local, "frames": len(crops)})


_ENCODERS: dict[str, object] = {}


def embed(jpegs: list[bytes], encoder_name: str) -> np.ndarray:
    """(n, D) float16 raw identity features of JPEG crops (bilinear resize, as GHOST's training), in batches of 32.

    Raw, not normalised: training normalises them only when ``model.normalize_identity`` asks for it.
    """
    if encoder_name not in _ENCODERS:
        _ENCODERS[encoder_name] = create_identity_encoder(encoder_name).eval()
    encoder = _ENCODERS[encoder_name]
    out = []
    with torch.inference_mode():
        for start in range(0, len(jpegs), EMBED_BATCH):
            batch = np.stack([decode_image(j) for j in jpegs[start:start + EMBED_BATCH]])
            x = torch.from_numpy(batch).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
            out.append(encoder.features(x, "bilinear").float().numpy())
    return np.concatenate(out).astype(np.float16)


def balanced_chunks(items: list, limit: int) -> list[list]:
    """Split into the fewest chunks of at most ``limit`` items, sizes differing by at most one."""
    if not items:
        return []
    count = -(-len(items) // limit)
    base, extra = divmod(len(items), count)
    chunks, start = [], 0
    for i in range(count):
        end = start + base + (1 if i < extra else 0)
        chunks.append(items[start:end])
        start = end
    return chunks


def extract_unit(unit: Unit, settings: ExtractSettings, work_dir: str) -> dict:
    """Process one unit into cached groups; returns ``{"digest", "groups": [...], "skipped": [...]}``."""
    final = unit_dir(Path(work_dir), unit, settings)
    summary = cached_summary(Path(work_dir), unit, settings)
    if summary is not None:
        return summary
    partial = final.with_name(final.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    sink = _GroupSink(partial, settings.embeddings)
    detector = get_detector(settings.faces.detector, settings.faces.min_score)
    root = Path(unit.root)
    if unit.kind == "folder":
        skipped = _extract_folder(unit, root, settings, detector, sink)
    elif unit.kind == "stills":
        skipped = _extract_still(unit, root, settings.faces, detector, sink)
    else:
        def emit(number: int, crops: list[Crop]) -> None:
            sink.add(unit.identity or f"{unit.prefix}#track{number}", crops)

        skipped = track_video(root / unit.files[0], unit.files[0], settings.faces, detector, settings.video_stride,
                              settings.track_jump, settings.max_frames_per_group, settings.min_track_frames, emit)
    summary = {"digest": final.name, "groups": sink.summary, "skipped": skipped}
    (partial / DONE).write_text(json.dumps(summary))
    shutil.rmtree(final, ignore_errors=True)
    os.replace(partial, final)
    return summary


def _face_of(image: np.ndarray, detector, settings: FaceSettings, source: str) -> tuple[Crop | None, str]:
    faces = detect_faces(detector, image)
    if not faces:
        return None, NO_FACE
    crop, reason = crop_face(image, main_face(faces), settings, source)
    return crop, reason or ""


def _extract_folder(unit: Unit, root: Path, settings: ExtractSettings, detector, sink: _GroupSink) -> list[dict]:
    """An identity folder: the main face of every image; groups of balanced size."""
    crops, skipped = [], []
    for rel in unit.files:
        image = readable_image(root / rel)
        if image is None:
            skipped.append({"source": rel, "reason": UNREADABLE_IMAGE})
            continue
        crop, reason = _face_of(image, detector, settings.faces, rel)
        if crop is None:
            skipped.append({"source": rel, "reason": reason})
        else:
            crops.append(crop)
    for chunk in balanced_chunks(crops, settings.max_frames_per_group):
        sink.add(unit.identity, chunk)
    return skipped


def _extract_still(unit: Unit, root: Path, settings: FaceSettings, detector, sink: _GroupSink) -> list[dict]:
    """A loose image: every face (numbered left to right) is its own identity ``<stem>#face<k>``."""
    rel = unit.files[0]
    image = readable_image(root / rel)
    if image is None:
        return [{"source": rel, "reason": UNREADABLE_IMAGE}]
    faces = sorted(detect_faces(detector, image), key=lambda f: (float(f.box[0]), float(f.box[1])))
    if not faces:
        return [{"source": rel, "reason": NO_FACE}]
    skipped = []
    for k, face in enumerate(faces):
        crop, reason = crop_face(image, face, settings, rel)
        if crop is None:
            skipped.append({"source": rel, "reason": reason, "face": k})
        else:
            sink.add(f"{unit.prefix}#face{k}", [crop])
    return skipped
