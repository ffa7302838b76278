"""Planning and writing shards: identity ids, seeded assignment of groups to shards, deterministic tars.

The plan is a pure function of the extracted groups, ``shard_groups`` and ``seed``: identities get
ids by sorted name (0..N-1), groups get indices within their identity in input order, then all
groups are shuffled with ``random.Random(seed)`` and cut into shards of ``shard_groups``. A tar is
written byte-for-byte deterministically (fixed member order, mtime, owner and mode), so the sha256
of shard ``i`` is known before it is written: an existing shard whose sha256 equals it is kept.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import random
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from data_pipelines.errors import OutputDirError
from faceswap_pl.data.schema import SHARD_PATTERN, GroupMeta, ShardInfo, frame_name, sample_key
from faceswap_pl.files import sha256_of

_MTIME = 946684800  # 2000-01-01: fixed so that rewriting a shard gives the same bytes


@dataclass
class PlannedGroup:
    """A group's place in the dataset; its content stays in the extraction cache until written."""

    digest: str            # unit cache folder
    local: int             # group number within the unit
    order: int             # unit order in the scan
    identity_name: str
    frames: int
    identity: int = -1
    group: int = -1

    @property
    def key(self) -> str:
        return sample_key(self.identity, self.group)


def plan_shards(groups: list[PlannedGroup], shard_groups: int, seed: int) -> tuple[dict[str, int], list[list[PlannedGroup]]]:
    """Assign identity ids and group indices, shuffle with ``seed``, cut into shards of ``shard_groups``."""
    ordered = sorted(groups, key=lambda g: (g.order, g.local))
    identities = {name: i for i, name in enumerate(sorted({g.identity_name for g in ordered}))}
    counters: dict[str, int] = {}
    for g in ordered:
        g.identity = identities[g.identity_name]
        g.group = counters.get(g.identity_name, 0)
        counters[g.identity_name] = g.group + 1
    shuffled = list(ordered)
    random.Random(seed).shuffle(shuffled)
    shards = [shuffled[i:i + shard_groups] for i in range(0, len(shuffled), shard_groups)]
    return identities, shards


def shard_path(out_dir: Path, index: int) -> Path:
    return Path(out_dir) / SHARD_PATTERN.format(index=index)


class _HashingWriter(io.RawIOBase):
    """A write-only stream that hashes (and optionally forwards) everything written to it."""

    def __init__(self, target=None) -> None:
        self.hash = hashlib.sha256()
        self.count = 0
        self.target = target

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        data = bytes(data)
        self.hash.update(data)
        self.count += len(data)
        if self.target is not None:
            self.target.write(data)
        return len(data)


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = _MTIME
    info.mode = 0o444
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    tar.addfile(info, io.BytesIO(data))


def sample_members(planned: PlannedGroup, record: dict, size: int, embedding: str | None) -> list[tuple[str, bytes]]:
    """The tar members of one sample: ``<key>.fNN.jpg`` ..., ``<key>.meta.json``, ``<key>.emb.npy``."""
    meta = GroupMeta(identity=planned.identity, identity_name=planned.identity_name, group=planned.group,
                     frames=len(record["jpeg"]), size=size, source=record["source"],
                     landmarks=np.round(record["landmarks"].astype(np.float64), 2).tolist(),
                     scores=record["scores"], frame_indices=record["frame_indices"],
                     embedding=embedding if record.get("embeddings") is not None else None)
    members = [(f"{planned.key}.{frame_name(i)}.jpg", jpeg) for i, jpeg in enumerate(record["jpeg"])]
    members.append((f"{planned.key}.meta.json", json.dumps(meta.to_json(), sort_keys=True).encode()))
    if record.get("embeddings") is not None:
        buffer = io.BytesIO()
        np.save(buffer, np.asarray(record["embeddings"], dtype=np.float16))
        members.append((f"{planned.key}.emb.npy", buffer.getvalue()))
    return members


def write_tar(stream, groups: list[PlannedGroup], load: Callable[[PlannedGroup], dict], size: int,
              embedding: str | None) -> int:
    """Serialise the samples of ``groups`` (in order) as a tar onto ``stream``; returns the frame count."""
    frames = 0
    with tarfile.open(fileobj=stream, mode="w|", format=tarfile.USTAR_FORMAT) as tar:
        for planned in groups:
            record = load(planned)
            frames += len(record["jpeg"])
            for name, data in sample_members(planned, record, size, embedding):
                _add(tar, name, data)
    return frames


def expected_shard(groups: list[PlannedGroup], load: Callable[[PlannedGroup], dict], size: int,
                   embedding: str | None) -> tuple[str, int, int]:
    """``(sha256, bytes, frames)`` the shard of ``groups`` will have, without writing it."""
    sink = _HashingWriter()
    frames = write_tar(sink, groups, load, size, embedding)
    return sink.hash.hexdigest(), sink.count, frames


def write_shard(path: Path, groups: list[PlannedGroup], load: Callable[[PlannedGroup], dict], size: int,
                embedding: str | None) -> ShardInfo:
    """Write a shard to ``<path>.tmp`` and rename it into place (readers never see half a shard)."""
    temp = path.with_name(path.name + ".tmp")
    try:
        with open(temp, "wb") as handle:
            sink = _HashingWriter(handle)
            frames = write_tar(sink, groups, load, size, embedding)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except OSError as error:  # a full disk, a quota, a vanished mount, an unreadable work file: keep no half shard
        temp.unlink(missing_ok=True)
        reason = error.strerror or type(error).__name__
        fix = (f"free space in '{path.parent}'" if error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
               else f"check '{path.parent}' and the disk of the build's work folder")
        raise OutputDirError(f"Writing shard '{path}' failed ({reason}); {fix} and run the same command again "
                             f"(finished shards are kept).") from error
    return ShardInfo(name=path.name, sha256=sink.hash.hexdigest(), groups=len(groups), frames=frames, bytes=sink.count)


def ensure_shard(path: Path, groups: list[PlannedGroup], load: Callable[[PlannedGroup], dict], size: int,
                 embedding: str | None) -> tuple[ShardInfo, bool]:
    """Keep ``path`` when it already holds exactly the planned bytes, else (re)write it; returns (info, kept)."""
    if path.is_file():
        sha, nbytes, frames = expected_shard(groups, load, size, embedding)
        if path.stat().st_size == nbytes and sha256_of(path) == sha:
            return ShardInfo(name=path.name, sha256=sha, groups=len(groups), frames=frames, bytes=nbytes), True
    return write_shard(path, groups, load, size, embedding), False
