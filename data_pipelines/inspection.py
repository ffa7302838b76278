"""Look into a shard folder: counts per shard / identity / group, skipped inputs, a contact sheet PNG."""

from __future__ import annotations

import json
import statistics
import tarfile
from collections import Counter
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from data_pipelines.errors import DatasetInputError
from faceswap_pl.data.schema import MANIFEST, SKIPPED, GroupMeta, Manifest, ShardSchemaError, parse_key
from faceswap_pl.files import read_json, sha256_of
from faceswap_pl.imageio import decode_image


def read_manifest(dataset: str | Path) -> Manifest:
    """The manifest of a dataset folder, or a clear error naming the folder."""
    path = Path(dataset).expanduser() / MANIFEST
    if not path.is_file():
        raise DatasetInputError(f"'{Path(dataset)}' holds no {MANIFEST}; pass a folder written by "
                                f"`faceswap-pl shards build` (or `shards demo`, e.g. demo_data/train).")
    data = read_json(path, ShardSchemaError, "rebuild the dataset with `faceswap-pl shards build`")
    return Manifest.from_json(data, where=str(path))


def iter_samples(dataset: str | Path, frames: bool = False) -> Iterator[tuple[str, GroupMeta, list[bytes]]]:
    """Every sample of a dataset in shard order: ``(key, meta, jpeg bytes)`` (bytes only if ``frames``)."""
    dataset = Path(dataset).expanduser()
    for shard in read_manifest(dataset).shards:
        path = dataset / shard.name
        try:
            with tarfile.open(path, "r") as tar:
                yield from _samples(tar, path, frames)
        except (OSError, tarfile.TarError) as error:
            raise ShardSchemaError(f"The shard '{path}' cannot be read ({error}); rerun `faceswap-pl shards build` "
                                   f"with the same options to rewrite it.") from error


def _samples(tar: tarfile.TarFile, path: Path, frames: bool):
    key, meta, jpegs = None, None, []
    for member in tar:
        sample, _, ext = member.name.partition(".")
        if sample != key:
            if key is not None:
                yield key, _checked(meta, key, path), jpegs
            parse_key(sample)
            key, meta, jpegs = sample, None, []
        if ext == "meta.json":
            meta = GroupMeta.from_json(json.loads(tar.extractfile(member).read()), where=str(path))
        elif frames and ext.endswith(".jpg"):
            jpegs.append(tar.extractfile(member).read())
    if key is not None:
        yield key, _checked(meta, key, path), jpegs


def _checked(meta: GroupMeta | None, key: str, path: Path) -> GroupMeta:
    if meta is None:
        raise ShardSchemaError(f"The sample '{key}' in '{path}' has no meta.json; rebuild the shards with "
                               f"`faceswap-pl shards build`.")
    return meta


def _spread(values: list[int]) -> dict[str, float]:
    if not values:
        return {"min": 0, "median": 0, "max": 0, "mean": 0.0}
    return {"min": min(values), "median": statistics.median(values), "max": max(values),
            "mean": round(statistics.fmean(values), 2)}


def inspect_shards(dataset: str | Path, sheet: str | Path | None = None, sheet_groups: int = 24,
                   verify: bool = False) -> dict:
    """Summarise a dataset folder (and write a contact sheet PNG when ``sheet`` is given).

    Returns a dict: ``shards, identities, groups, frames, size, embedding, multi_frame_groups,
    frames_per_identity`` and ``groups_per_identity`` (min/median/max/mean), ``skipped`` (count per
    reason), ``bad_shards`` (names whose sha256 differs from the manifest; checked when ``verify``),
    ``sheet`` (the PNG path or None).
    """

    dataset = Path(dataset).expanduser()
    manifest = read_manifest(dataset)
    per_identity_frames: Counter = Counter()
    per_identity_groups: Counter = Counter()
    groups = frames = multi = 0
    for _, meta, _ in iter_samples(dataset):
        groups += 1
        frames += meta.frames
        multi += meta.frames > 1
        per_identity_frames[meta.identity_name] += meta.frames
        per_identity_groups[meta.identity_name] += 1
    skipped_path = dataset / SKIPPED
    skipped = json.loads(skipped_path.read_text()) if skipped_path.is_file() else []
    bad = [s.name for s in manifest.shards if verify and sha256_of(dataset / s.name) != s.sha256]
    summary = {
        "dataset": str(dataset), "shards": len(manifest.shards), "identities": len(per_identity_frames),
        "groups": groups, "frames": frames, "size": manifest.size, "embedding": manifest.embedding,
        "multi_frame_groups": multi,
        "frames_per_identity": _spread(list(per_identity_frames.values())),
        "groups_per_identity": _spread(list(per_identity_groups.values())),
        "skipped": dict(Counter(s["reason"] for s in skipped).most_common()),
        "bad_shards": bad, "sheet": None,
    }
    if sheet is not None:
        summary["sheet"] = str(contact_sheet(dataset, sheet, groups=sheet_groups))
    return summary


def _shorten(text: str, width: int) -> str:
    """Fit ``text`` in ``width`` characters, keeping both ends (identity names end in #face<k>/#track<k>)."""
    if len(text) <= width:
        return text
    tail = width // 2
    return text[:width - tail - 2] + ".." + text[-tail:]


def contact_sheet(dataset: str | Path, path: str | Path, groups: int = 24, columns: int = 6, tile: int = 128) -> Path:
    """A PNG grid of the first frame of the first ``groups`` groups, each labelled with its identity."""
    tiles = []
    for _, meta, jpegs in iter_samples(dataset, frames=True):
        if len(tiles) >= groups:
            break
        face = cv2.resize(decode_image(jpegs[0]), (tile, tile), interpolation=cv2.INTER_AREA)
        label = np.full((32, tile, 3), 255, np.uint8)
        lines = (_shorten(meta.identity_name, tile // 6), f"id {meta.identity} g{meta.group} x{meta.frames}")
        for row, text in enumerate(lines):
            cv2.putText(label, text, (3, 13 + 14 * row), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 0, 0), 1, cv2.LINE_AA)
        tiles.append(np.vstack([face, label]))
    if not tiles:
        raise DatasetInputError(f"'{dataset}' holds no samples to draw.")
    while len(tiles) % columns and len(tiles) > columns:
        tiles.append(np.full_like(tiles[0], 255))
    rows = [np.hstack(tiles[i:i + columns]) for i in range(0, len(tiles), columns)]
    grid = np.vstack(rows)
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR)):
        raise DatasetInputError(f"Cannot write the contact sheet '{path}'; pass a writable .png path with --sheet.")
    return path
