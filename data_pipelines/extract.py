"""Extraction: one unit (identity folder, video, loose still) -> cached groups of aligned face crops.

Runs inside worker processes. Each unit's result goes to ``<work>/<digest>/``: one ``.npz`` per group
(JPEG bytes, landmarks, scores, frame numbers, optional embeddings; see :func:`save_group`) and
``done.json`` (the group summary and the unit's skipped inputs). It is written to ``<digest>.partial/``
and renamed when complete, so a killed build leaves either a finished unit or nothing; the digest covers
the unit's files (path, size, mtime) and every extraction setting, so a rerun reuses exactly the units
whose inputs and settings did not change.

The cache holds no pickles: group files are read with ``np.load(allow_pickle=False)`` and the non-array
fields are JSON, so a file planted in the work folder cannot run code. A finished unit whose files do
not read back (corrupt, truncated, or the ``.pkl`` files of older versions, which are never loaded) is
deleted with one warning naming the file, and extracted again.
"""

from __future__ import annotations

import json
import logging
import os
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
from faceswap_pl.errors import FaceSwapError
from faceswap_pl.files import atomic_write
from faceswap_pl.imageio import decode_image
from faceswap_pl.models.identity import create_identity_encoder

EXTRACT_VERSION = 2
DONE = "done.json"
EMBED_BATCH = 32
_TEXT_FIELDS = ("identity_name", "source", "scores", "frame_indices")  # stored as the JSON member "meta"
_ARRAYS = {"meta", "jpeg", "jpeg_sizes", "landmarks"}                  # plus "embeddings" when computed
_ZIP = b"PK\x03\x04"                                                   # how every .npz (a zip archive) starts

log = logging.getLogger(__name__)


class CacheFileError(FaceSwapError):
    """A group file of the extraction cache changed or broke while the build was reading it."""


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


def group_path(folder: Path, local: int) -> Path:
    return Path(folder) / f"g{local:05d}.npz"


def save_group(path: Path, record: dict) -> None:
    """Write a group record as an uncompressed ``.npz`` holding only plain arrays (renamed into place).

    ``meta``: the UTF-8 JSON of ``identity_name, source, scores, frame_indices``; ``jpeg``: the JPEG
    bytes one after the other, ``jpeg_sizes`` their lengths; ``landmarks``; ``embeddings`` only when
    not None. JSON gives floats back exactly and arrays keep dtype and shape, so
    :func:`read_group` returns an equal record.
    """
    meta = json.dumps({name: record[name] for name in _TEXT_FIELDS}).encode()
    arrays = {"meta": np.frombuffer(meta, np.uint8),
              "jpeg": np.frombuffer(b"".join(record["jpeg"]), np.uint8),
              "jpeg_sizes": np.array([len(j) for j in record["jpeg"]], np.int64),
              "landmarks": np.asarray(record["landmarks"])}
    if record["embeddings"] is not None:
        arrays["embeddings"] = np.asarray(record["embeddings"])
    atomic_write(path, lambda handle: np.savez(handle, **arrays))


def read_group(path: Path) -> dict:
    """The record :func:`save_group` wrote; ``ValueError`` (or another exception of the reader) if the file is
    not one. Nothing in it can run code: a file that is not a zip archive (a pickle, say) is refused before
    numpy sees it, and ``allow_pickle=False`` refuses a member holding Python objects."""
    with open(path, "rb") as handle:
        head = handle.read(len(_ZIP))
        if head != _ZIP:
            raise ValueError("a pickle, which is never loaded" if head[:1] == b"\x80" else "not an .npz archive")
        handle.seek(0)
        with np.load(handle, allow_pickle=False) as data:
            names = set(data.files)
            if names - {"embeddings"} != _ARRAYS:
                raise ValueError(f"holds the arrays {sorted(names)}")
            arrays = {name: data[name] for name in names}
    meta = json.loads(arrays["meta"].tobytes().decode())
    blob, sizes = arrays["jpeg"].tobytes(), arrays["jpeg_sizes"]
    if sizes.ndim != 1 or (sizes < 0).any() or int(sizes.sum()) != len(blob):
        raise ValueError("the JPEG sizes do not match the JPEG bytes")
    ends = np.cumsum(sizes).tolist()
    record = {name: meta[name] for name in _TEXT_FIELDS}
    record["jpeg"] = [blob[start:end] for start, end in zip([0] + ends[:-1], ends)]
    record["landmarks"] = arrays["landmarks"]
    record["embeddings"] = arrays.get("embeddings")
    frames = len(record["jpeg"])
    if len(record["landmarks"]) != frames or len(record["scores"]) != frames:
        raise ValueError(f"{frames} JPEGs but {len(record['landmarks'])} landmarks and {len(record['scores'])} scores")
    return record


def _check_unit(folder: Path) -> tuple[dict | None, str]:
    """``(summary, "")`` when the finished unit reads back completely, else ``(None, why)`` naming the file."""
    done = folder / DONE
    try:
        summary = json.loads(done.read_text())
        if summary["digest"] != folder.name or not isinstance(summary["skipped"], list):
            raise ValueError("not the summary of this unit")
        groups = [(int(g["local"]), int(g["frames"]), g["identity_name"]) for g in summary["groups"]]
    except Exception as error:  # unreadable, not JSON, not a summary
        return None, f"{done} is not a unit summary ({type(error).__name__}: {error})"
    for local, frames, _ in groups:
        path = group_path(folder, local)
        if not path.is_file():
            old = sorted(p.name for p in folder.glob("*.pkl"))
            if old:
                return None, (f"{folder} holds the pickle cache of an older version ({', '.join(old[:3])}"
                              f"{', ...' if len(old) > 3 else ''}), which is never loaded")
            return None, f"{path} is missing"
        try:
            record = read_group(path)
            if len(record["jpeg"]) != frames:
                raise ValueError(f"{len(record['jpeg'])} frames where {DONE} says {frames}")
        except Exception as error:  # corrupt, truncated, a pickle, another format: never loaded
            return None, f"{path} is not a readable group file ({type(error).__name__}: {error})"
    return summary, ""


def cached_summary(work_dir: Path, unit: Unit, settings: ExtractSettings) -> dict | None:
    """The summary of a unit finished by an earlier (possibly killed) run, or None.

    Every group file is read back first; a unit that does not read back is deleted (one warning naming the
    file) and counts as not done, so it is extracted again.
    """
    folder = unit_dir(work_dir, unit, settings)
    if not (folder / DONE).is_file():
        return None
    summary, why = _check_unit(folder)
    if summary is None:
        log.warning("Extraction cache: %s; extracting %s again.", why, unit.name)
        shutil.rmtree(folder, ignore_errors=True)
    return summary


def load_group(work_dir: Path, digest: str, local: int) -> dict:
    """A cached group: ``identity_name, source, jpeg, landmarks, scores, frame_indices, embeddings``."""
    path = group_path(Path(work_dir) / digest, local)
    try:
        return read_group(path)
    except Exception as error:  # checked when the unit was found or written: something changed it since
        raise CacheFileError(f"The extraction cache file {path} is not readable ({type(error).__name__}: {error}); "
                             f"run the same command again (that unit is extracted again).") from None


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
        save_group(group_path(self.folder, local), record)
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
