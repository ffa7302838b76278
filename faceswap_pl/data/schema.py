"""The shard schema: one WebDataset sample = one identity group (frames of one person).

A shard is a tar of samples; each sample has the key ``id{identity:06d}_g{group:04d}`` and members::

    f00.jpg, f01.jpg, ...   aligned face crops (ArcFace template at the dataset's crop size), JPEG
                            bytes exactly as written (never re-encoded on read)
    meta.json               GroupMeta below
    emb.npy                 optional (frames, D) float16 identity features: raw (manifest
                            ``embedding_vector: raw``) or, in builds before that field, L2-normalised

A dataset folder holds the shards (``shard-000000.tar`` ...), ``manifest.json`` (Manifest below)
and ``skipped.json`` (every input the builder skipped, with its reason).
Groups are shuffled across shards when written, so any shard holds many identities.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

from faceswap_pl.errors import FaceSwapError

SCHEMA_VERSION = 1
MAX_FRAMES_PER_GROUP = 100  # frame member names have two digits
MANIFEST = "manifest.json"
SKIPPED = "skipped.json"
SHARD_PATTERN = "shard-{index:06d}.tar"
_KEY = re.compile(r"^id(\d{6})_g(\d{4})$")


class ShardSchemaError(FaceSwapError):
    """A shard or manifest is not of the schema this version reads."""


def sample_key(identity: int, group: int) -> str:
    return f"id{identity:06d}_g{group:04d}"


def parse_key(key: str) -> tuple[int, int]:
    """``id000012_g0003`` -> (12, 3)."""
    match = _KEY.match(key.rsplit("/", 1)[-1])
    if match is None:
        raise ShardSchemaError(f"Sample key {key!r} is not of the form id<6 digits>_g<4 digits>; rebuild the shards "
                               f"with `faceswap-pl shards build`.")
    return int(match.group(1)), int(match.group(2))


def frame_name(index: int) -> str:
    """Member name of frame ``index`` without the extension: ``f00`` ... ``f99``."""
    if not 0 <= index < MAX_FRAMES_PER_GROUP:
        raise ValueError(f"frame index {index} outside 0..{MAX_FRAMES_PER_GROUP - 1}")
    return f"f{index:02d}"


@dataclass
class GroupMeta:
    """``meta.json`` of one sample.

    Attributes:
        schema: SCHEMA_VERSION of the writer.
        identity: integer identity id, unique across the dataset (pairs of different ids are different people).
        identity_name: the human-readable name (identity folder name, or ``<video stem>#track<k>``).
        group: group index within the identity.
        frames: number of frames (``f00.jpg`` ... ).
        size: crop size in pixels.
        source: the input file(s) the frames came from, relative to the input root.
        landmarks: per frame, the 5 template keypoints as detected, in crop pixels ((frames, 5, 2)).
        scores: per frame, the detector score.
        frame_indices: for videos, the frame numbers in the source video; empty for images.
        embedding: name of the identity encoder of ``emb.npy``, or None when absent.
    """

    identity: int
    identity_name: str
    group: int
    frames: int
    size: int
    source: list[str]
    landmarks: list[list[list[float]]] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    frame_indices: list[int] = field(default_factory=list)
    embedding: str | None = None
    schema: int = SCHEMA_VERSION

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any], where: str = "a shard") -> "GroupMeta":
        version = data.get("schema")
        if version != SCHEMA_VERSION:
            raise ShardSchemaError(
                f"{where} was written with shard schema {version!r}, this version reads schema {SCHEMA_VERSION}; "
                f"rebuild it with `faceswap-pl shards build`."
            )
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class ShardInfo:
    name: str
    sha256: str
    groups: int
    frames: int
    bytes: int


@dataclass
class Manifest:
    """``manifest.json`` of a dataset folder."""

    size: int
    shards: list[ShardInfo]
    identities: dict[str, int]          # identity name -> id
    groups: int
    frames: int
    embedding: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    schema: int = SCHEMA_VERSION
    embedding_vector: str = "unit"      # "raw" features, or "unit" vectors (builds before this field)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any], where: str = "manifest.json") -> "Manifest":
        version = data.get("schema")
        if version != SCHEMA_VERSION:
            raise ShardSchemaError(
                f"{where} is of shard schema {version!r}, this version reads schema {SCHEMA_VERSION}; rebuild the "
                f"dataset with `faceswap-pl shards build`."
            )
        shards = [ShardInfo(**s) for s in data["shards"]]
        known = {f for f in cls.__dataclass_fields__} - {"shards"}
        return cls(shards=shards, **{k: v for k, v in data.items() if k in known})
