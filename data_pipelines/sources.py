"""Input discovery: turn input folders into *units*, the pieces of work one worker processes.

An input root may hold, in any mix (the kind of each entry is told by its file type):

* identity folders — one sub-folder per person (VGGFace2 / CelebA-by-identity style) holding
  images and/or videos, searched recursively. Every face in it is that person. Its images form
  one unit (kind ``folder``); each video in it is its own unit (kind ``video``) whose tracks all
  belong to the folder's identity (a talking-head clip of that person, as in VoxCeleb).
* videos directly in the root — each is a unit (kind ``video``); every face track found in it is
  its own identity ``<video stem>#track<k>``.
* images directly in the root — each is a unit (kind ``stills``): every face in it is its own
  identity ``<image stem>#face<k>`` (faces numbered left to right), a one-frame group.

Files of other types are reported as skipped ("unsupported file type"); hidden files are ignored.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from data_pipelines.errors import DatasetInputError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"})


@dataclass
class Unit:
    """One piece of work: an identity folder's images, one video, or one loose still image.

    Attributes:
        kind: ``folder`` | ``video`` | ``stills``.
        root: the input root the files are relative to.
        files: the input files (relative to ``root``, POSIX form), sorted.
        identity: the identity name of every face in the unit (``folder``, and ``video`` inside an
            identity folder), or None when each track / face names its own identity.
        prefix: for ``video`` / ``stills`` without a fixed identity, the stem identities derive from.
        order: position of the unit in the sorted scan (fixes group order within an identity).
        stat: per file, (size, mtime in ns): a changed file invalidates the unit's cached result.
    """

    kind: str
    root: str
    files: list[str]
    identity: str | None = None
    prefix: str = ""
    order: int = 0
    stat: list[tuple[int, int]] = field(default_factory=list)

    @property
    def name(self) -> str:
        """Short label for progress displays and messages."""
        return self.identity or self.prefix or self.files[0]

    def digest(self, settings: dict) -> str:
        """Key of the unit's cached result: its files (path, size, mtime) and the extraction settings."""
        payload = json.dumps([self.kind, self.root, self.files, self.identity, self.prefix, self.stat, settings],
                             sort_keys=True, default=str)
        return hashlib.sha1(payload.encode()).hexdigest()[:20]


@dataclass
class Scan:
    """Result of scanning the input roots: the units and the files skipped while scanning."""

    units: list[Unit]
    skipped: list[dict]


def _visible(path: Path, root: Path) -> bool:
    return not any(part.startswith(".") for part in path.relative_to(root).parts)


def _stat(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_size, st.st_mtime_ns


def scan_inputs(inputs: list[str | Path], exclude: str | Path | None = None) -> Scan:
    """Scan every input root into units (sorted, deterministic); raise if a root is missing or empty.

    ``exclude`` (the output folder) is left out when it lies inside an input root.

    Raises:
        DatasetInputError: a root does not exist, is not a folder, or holds no image or video at all.
    """
    if not inputs:
        raise DatasetInputError("No input folder given; pass a folder of identity folders or of videos "
                                "(e.g. --input data/people).")
    units: list[Unit] = []
    skipped: list[dict] = []
    owners: dict[tuple[str, str], str] = {}
    skip = Path(exclude).expanduser().resolve() if exclude is not None else None
    for raw in inputs:
        root = Path(raw).expanduser()
        if not root.is_dir():
            what = "does not exist" if not root.exists() else "is not a folder"
            raise DatasetInputError(f"The input folder '{root}' {what}; pass a folder of identity folders "
                                    f"(one folder of images per person) or of video files.")
        found = _scan_root(root, units, skipped, owners, skip)
        if not found:
            raise DatasetInputError(
                f"The input folder '{root}' holds no images or videos; expected one folder per person with "
                f"images (e.g. '{root / 'alice' / '0001.jpg'}') and/or video files "
                f"({', '.join(sorted(VIDEO_SUFFIXES))}) in it.")
    for order, unit in enumerate(units):
        unit.order = order
    return Scan(units, skipped)


def _claim(owners: dict[tuple[str, str], str], kind: str, entry: Path) -> None:
    """Root-level videos (and stills) name identities after their stem: two with one stem would collide."""
    owner = owners.setdefault((kind, entry.stem), str(entry))
    if owner != str(entry):
        raise DatasetInputError(f"The inputs '{owner}' and '{entry}' share the name '{entry.stem}', so the "
                                f"identities named after them would collide; rename one of them.")


def _scan_root(root: Path, units: list[Unit], skipped: list[dict], owners: dict[tuple[str, str], str],
               skip: Path | None) -> int:
    """Append the units of one root; returns how many image/video files it holds."""
    found = 0
    root_str = str(root.resolve())
    for entry in sorted(root.iterdir()):
        if entry.name.startswith(".") or (skip is not None and entry.resolve() == skip):
            continue
        rel = entry.relative_to(root).as_posix()
        suffix = entry.suffix.lower()
        if entry.is_dir():
            images, videos = [], []
            for path in sorted(p for p in entry.rglob("*") if p.is_file() and _visible(p, root)):
                kind = path.suffix.lower()
                path_rel = path.relative_to(root).as_posix()
                if kind in IMAGE_SUFFIXES:
                    images.append(path)
                elif kind in VIDEO_SUFFIXES:
                    videos.append(path)
                else:
                    skipped.append({"source": path_rel, "reason": "unsupported file type"})
            if images:
                units.append(Unit("folder", root_str, [p.relative_to(root).as_posix() for p in images],
                                  identity=entry.name, stat=[_stat(p) for p in images]))
            for video in videos:
                units.append(Unit("video", root_str, [video.relative_to(root).as_posix()], identity=entry.name,
                                  stat=[_stat(video)]))
            found += len(images) + len(videos)
        elif suffix in VIDEO_SUFFIXES:
            _claim(owners, "video", entry)
            units.append(Unit("video", root_str, [rel], prefix=entry.stem, stat=[_stat(entry)]))
            found += 1
        elif suffix in IMAGE_SUFFIXES:
            _claim(owners, "stills", entry)
            units.append(Unit("stills", root_str, [rel], prefix=entry.stem, stat=[_stat(entry)]))
            found += 1
        elif entry.is_file():
            skipped.append({"source": rel, "reason": "unsupported file type"})
    return found
