"""Streaming reader of identity-group shards (see :mod:`faceswap_pl.data.schema`).

Three steps, each a plain function so that the pair stream (and tests) can compose them:

* :func:`resolve_shards` turns what a user typed into a list of shard URLs: a local path, a glob
  (``data/train/shard-*.tar``), a brace list (``shard-{000000..000003}.tar``), a ``pipe:`` URL
  (``pipe:aws s3 cp s3://bucket/shard-{000000..000009}.tar -``), several of these joined by ``::``
  or given as a list, or a dataset folder whose ``manifest.json`` lists the shards (its schema is checked).
* :func:`shard_order` is the endless, deterministic order in which one DataLoader worker of one rank
  reads shards: ``split_by_node`` then ``split_by_worker`` over a per-round permutation shared by every
  rank, or -- when there are fewer shards than rank x worker slots -- resampling with replacement from a
  generator seeded by (seed, epoch, rank, worker).
* :func:`read_groups` streams the groups of shards (WebDataset tar iteration, ``gopen`` for files and
  pipes) as :class:`Group` records holding undecoded JPEG bytes; a truncated or unreadable tar raises
  :class:`ShardReadError` naming the shard.

Identity ids are numbered 0, 1, ... within each build, so two builds read together would share ids (two
different people, one id: pairing would call them the same person, retrieval would mix them). Each build
is therefore a namespace: a local shard belongs to the build whose ``manifest.json`` sits next to it, a
remote one (``pipe:``, http) to the ``::``-joined source it was named in; the k-th build met (k = 0, 1, ...)
reads with identity ``k * IDENTITY_NAMESPACE + id`` and group key ``source<k>/<key>`` (the first keeps the
ids and keys as stored).
"""

from __future__ import annotations

import glob
import io
import json
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import braceexpand
import numpy as np
from webdataset.gopen import gopen
from webdataset.tariterators import group_by_keys, tar_file_iterator

from faceswap_pl.data.schema import MANIFEST, GroupMeta, Manifest, ShardSchemaError, parse_key
from faceswap_pl.errors import FaceSwapError
from faceswap_pl.files import read_json

#: identity ids of the k-th ``::``-joined source start at k * IDENTITY_NAMESPACE (shard keys hold 6-digit ids)
IDENTITY_NAMESPACE = 1_000_000

_FRAME = re.compile(r"^f(\d{2})\.jpg$")
_GLOB_CHARS = re.compile(r"[*?\[]")
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")
_END_OF_ARCHIVE = 1024  # a tar ends with two 512-byte zero blocks
_COMPRESSED = (b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00")  # gzip, bzip2, xz magic


class ShardReadError(FaceSwapError):
    """A shard cannot be opened or its tar stream is truncated or corrupt."""


class ShardNotFoundError(FaceSwapError, FileNotFoundError):
    """A shard path, glob or dataset folder names nothing that exists."""


@dataclass
class Group:
    """One identity group as read from a shard, frames still JPEG-encoded.

    Attributes:
        key: the sample key ``id{identity:06d}_g{group:04d}``.
        url: the shard it came from.
        identity: integer identity id (different ids are different people).
        group: group index within the identity.
        frames: JPEG bytes of ``f00.jpg`` ... in frame order; an entry is set to ``None`` once it failed
            to decode, so that it is not chosen again.
        size: crop size written in ``meta.json``.
        embeddings: ``(frames, D)`` float16 rows of ``emb.npy`` when requested and present, else None.
    """

    key: str
    url: str
    identity: int
    group: int
    frames: list[bytes | None]
    size: int
    embeddings: np.ndarray | None = None

    def usable(self) -> list[int]:
        """Indices of the frames not (yet) found corrupt."""
        return [i for i, data in enumerate(self.frames) if data is not None]


def split_sources(spec: str | Sequence[str]) -> list[str]:
    """The sources of a shard spec: ``a::b`` or a list -> each part (a folder, path, glob, brace list or URL)."""
    if isinstance(spec, (str, os.PathLike)):
        return [s for s in str(spec).split("::") if s.strip()]
    return [str(s) for s in spec]


def _manifest_urls(folder: Path) -> list[str]:
    path = folder / MANIFEST
    if not path.is_file():
        raise ShardNotFoundError(
            f"Dataset folder {folder} has no {MANIFEST}; give its shards as a glob (e.g. '{folder}/shard-*.tar') "
            f"or rebuild the dataset with `faceswap-pl shards build`.")
    data = read_json(path, ShardSchemaError, "rebuild the dataset with `faceswap-pl shards build`")
    manifest = Manifest.from_json(data, where=str(path))
    urls = []
    for shard in manifest.shards:
        url = str(folder / shard.name)
        if not os.path.isfile(url):
            raise ShardNotFoundError(f"Shard {url} listed in {path} is missing; copy the whole dataset folder or "
                                     f"rebuild it with `faceswap-pl shards build`.")
        if os.path.getsize(url) != shard.bytes:
            raise _truncated(url, f"{os.path.getsize(url)} bytes, {MANIFEST} says {shard.bytes}")
        urls.append(url)
    return urls


class ShardURL(str):
    """A shard URL that remembers the identity namespace of the source it came from (module docstring)."""

    namespace: int = 0

    def __new__(cls, url: str, namespace: int = 0) -> "ShardURL":
        made = super().__new__(cls, url)
        made.namespace = namespace
        return made

    def __reduce__(self):
        return ShardURL, (str(self), self.namespace)


def namespace_of(url: str) -> int:
    return getattr(url, "namespace", 0)


def resolve_shards(spec: str | Sequence[str]) -> list[str]:
    """Shard URLs for a path, glob, brace list, ``pipe:``/remote URL, dataset folder, or ``::``-joined list.

    Local files must exist and globs must match (one sentence naming the input otherwise). ``pipe:``
    and other URLs with a scheme are brace-expanded and passed to WebDataset's ``gopen`` as they are.
    The URLs are :class:`ShardURL` s carrying their build's identity namespace (module docstring).
    """
    urls: list[str] = []
    builds: dict[str, int] = {}
    for index, source in enumerate(split_sources(spec)):
        for url in _source_urls(source):
            build = _build_of(url) or f"source {index}"
            urls.append(ShardURL(url, builds.setdefault(build, len(builds))))
    if not urls:
        raise ShardNotFoundError(f"{spec!r} names no shards; give a shard path, glob, brace list, pipe: URL or "
                                 f"dataset folder.")
    return urls


def _build_of(url: str) -> str | None:
    """The dataset build a local shard belongs to (its folder, when it holds manifest.json), else None."""
    if _SCHEME.match(url) and not url.startswith("file:"):
        return None
    folder = Path(os.path.expanduser(re.sub(r"^file:(//)?", "", url))).resolve().parent
    return str(folder) if (folder / MANIFEST).is_file() else None


def _source_urls(source: str) -> list[str]:
    """The shard URLs of one source (not ``::``-joined)."""
    urls: list[str] = []
    for item in braceexpand.braceexpand(source.strip()):
        if _SCHEME.match(item) and not item.startswith("file:"):
            urls.append(item)
            continue
        path = os.path.expanduser(re.sub(r"^file:(//)?", "", item))
        if _GLOB_CHARS.search(path):
            matches = sorted(glob.glob(path))
            if not matches:
                raise ShardNotFoundError(f"No shard matches {item!r}; check the path (build shards with "
                                         f"`faceswap-pl shards build`).")
            urls.extend(matches)
        elif os.path.isdir(path):
            urls.extend(_manifest_urls(Path(path)))
        elif os.path.isfile(path):
            urls.append(path)
        else:
            raise ShardNotFoundError(f"Shard {item!r} does not exist; check the path (build shards with "
                                     f"`faceswap-pl shards build`).")
    return urls


def manifest_of(spec: str | Sequence[str]) -> Manifest | None:
    """The manifest when ``spec`` is a single dataset folder, else None."""
    sources = split_sources(spec)
    if len(sources) == 1 and os.path.isdir(os.path.expanduser(sources[0])):
        path = Path(os.path.expanduser(sources[0])) / MANIFEST
        if path.is_file():
            return Manifest.from_json(json.loads(path.read_text()), where=str(path))
    return None


def shard_order(urls: Sequence[str], *, seed: int, epoch: int = 0, rank: int = 0, world_size: int = 1,
                worker: int = 0, num_workers: int = 1, shuffle: bool = True) -> Iterator[str]:
    """The endless order in which worker ``worker`` of rank ``rank`` reads ``urls``.

    With at least ``world_size * num_workers`` shards, each round permutes the list with a generator
    seeded by (seed, epoch, round) -- the same permutation on every rank -- and takes this rank's slice
    (``split_by_node``) then this worker's slice of it (``split_by_worker``): within a round no shard is
    read twice. With fewer shards (some slots would get none), every slot instead resamples shards with
    replacement from a generator seeded by (seed, epoch, rank, worker). ``shuffle=False`` keeps the
    listed order in every round (validation). Either way the same arguments give the same order.
    """
    if not urls:
        raise ShardNotFoundError("No shards to read; give a shard path, glob, brace list or dataset folder.")
    slots = world_size * num_workers
    if len(urls) >= slots:
        for round_ in range(1 << 62):
            order = (np.random.default_rng([seed, epoch, round_]).permutation(len(urls)) if shuffle
                     else np.arange(len(urls)))
            for index in order[rank::world_size][worker::num_workers]:
                yield urls[int(index)]
    else:
        rng = np.random.default_rng([seed, epoch, rank, worker, 1])
        offset = rank * num_workers + worker
        for step in range(1 << 62):
            yield urls[int(rng.integers(len(urls))) if shuffle else (offset + step) % len(urls)]


def _reason(error: BaseException) -> str:
    text = str(error.args[0]) if error.args else type(error).__name__
    return text.split(" @ ")[0] or type(error).__name__


def _group(sample: dict, url: str, embeddings: bool) -> Group | None:
    key = sample["__key__"]
    namespace = namespace_of(url)
    where = f"Group {key} in shard {url}"
    parse_key(key)
    if "meta.json" not in sample:
        raise ShardSchemaError(f"{where} has no meta.json; rebuild the shards with `faceswap-pl shards build`.")
    try:
        meta = GroupMeta.from_json(json.loads(sample["meta.json"]), where=where)
    except (ValueError, TypeError) as error:
        if isinstance(error, FaceSwapError):
            raise
        raise ShardSchemaError(f"{where} has an unreadable meta.json ({error}); rebuild the shards with "
                               f"`faceswap-pl shards build`.") from None
    names = sorted((int(m.group(1)), name) for name in sample if (m := _FRAME.match(name)))
    if not names:
        return None
    matrix = None
    if embeddings:
        if "emb.npy" not in sample:
            raise ShardSchemaError(f"{where} has no emb.npy but use_embeddings is on; build the shards with "
                                   f"embeddings or set use_embeddings=False.")
        matrix = np.load(io.BytesIO(sample["emb.npy"]), allow_pickle=False)
        if matrix.ndim != 2 or len(matrix) <= names[-1][0]:
            raise ShardSchemaError(f"{where} has an emb.npy of shape {matrix.shape} for {len(names)} frames; rebuild "
                                   f"the shards with `faceswap-pl shards build`.")
        matrix = matrix[[index for index, _ in names]]
    return Group(key=key if namespace == 0 else f"source{namespace}/{key}", url=url,
                 identity=namespace * IDENTITY_NAMESPACE + meta.identity, group=meta.group, size=meta.size,
                 frames=[sample[name] for _, name in names], embeddings=matrix)


class _TailReader:
    """A read-only stream wrapper that remembers the last bytes read (to find the end-of-archive blocks)."""

    def __init__(self, stream) -> None:
        self.stream = stream
        self.head = b""
        self.tail = b""

    def read(self, size: int = -1) -> bytes:
        data = self.stream.read(size)
        if len(self.head) < 8:
            self.head += data[:8]
        self.tail = (self.tail + data)[-_END_OF_ARCHIVE:]
        return data

    def ends_properly(self) -> bool:
        """Read what the tar reader left (padding) and check the stream ends with two zero blocks.

        Compressed tars are not checked here: their decompressor already fails on a cut stream.
        """
        if self.head.startswith(_COMPRESSED):
            return True
        while self.read(1 << 16):
            pass
        return len(self.tail) == _END_OF_ARCHIVE and not any(self.tail)

    def close(self) -> None:
        self.stream.close()


def _truncated(url: str, reason: str) -> ShardReadError:
    return ShardReadError(f"Shard {url} cannot be read to the end ({reason}): it is truncated or corrupt; copy it "
                          f"again or rebuild the dataset with `faceswap-pl shards build`.")


def _check_member_name(url: str, name: str) -> None:
    """Shards are flat: a member name with a folder part (``a/b``, ``/abs``, ``../x``) is refused, never used."""
    if name in ("", ".", "..") or "/" in name or "\\" in name:
        raise ShardSchemaError(f"Shard {url} holds a member named {name!r} (a path, not a flat name); it was not "
                               f"written by `faceswap-pl shards build` — rebuild it, and do not extract it.")


def _members(url: str) -> Iterator[dict]:
    """The tar members of ``url`` (``gopen``: files, ``pipe:``, http...), checked to end with a tar's end blocks.

    Python's stream tar reader stops silently when a file is cut at or inside a header, so the end is
    checked here: a complete tar ends with two 512-byte zero blocks.
    """
    stream = _TailReader(gopen(url, "rb"))
    try:
        for member in tar_file_iterator(stream):
            _check_member_name(url, member.get("fname", ""))
            member["__url__"] = url
            yield member
        if not stream.ends_properly():
            raise _truncated(url, "no end-of-archive blocks")
    finally:
        stream.close()


def read_shard(url: str, embeddings: bool = False) -> Iterator[Group]:
    """The groups of one shard in stored order; :class:`ShardReadError` names the shard if it is unreadable."""
    samples = group_by_keys(_members(url))
    while True:
        try:
            sample = next(samples)
        except StopIteration:
            return
        except FaceSwapError:
            raise
        except Exception as error:  # tarfile.ReadError, EOFError, OSError from a failed pipe, ...
            raise _truncated(url, _reason(error)) from None
        group = _group(sample, url, embeddings)
        if group is not None:
            yield group


def read_groups(urls: Iterable[str], embeddings: bool = False) -> Iterator[Group]:
    """The groups of ``urls`` (any iterable, e.g. :func:`shard_order`), one shard after the other."""
    for url in urls:
        yield from read_shard(url, embeddings)
