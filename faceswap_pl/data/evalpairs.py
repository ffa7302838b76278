"""A fixed set of (source, target) evaluation pairs from validation shards, and the retrieval gallery.

The same shards give the same pairs on every call, whatever the training seed: the choice uses a
fixed generator over the groups read in listed shard order. Every pair has two different identities
(face swapping proper), and sources cycle through the identities. The gallery of ID retrieval holds
every identity of the split (sources and targets alike, FaceShifter's protocol): up to
``GALLERY_PER_IDENTITY`` frames of each (at most ``GALLERY_MAX`` in all, at least one per identity), kept
as uint8 crops of at most ``GALLERY_SIZE`` px. The choice is a list of ``(sample key, frame)`` references
that can be saved to and loaded from JSON (:func:`save_refs`, :func:`load_refs`), so a study can pin its
pairs and gallery even if the shards are later re-listed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from faceswap_pl.data.augment import ViewTransform, to_model_range
from faceswap_pl.data.pairs import SingleIdentityError, reduction
from faceswap_pl.data.reader import read_groups
from faceswap_pl.data.schema import ShardSchemaError
from faceswap_pl.errors import FaceSwapError
from faceswap_pl.imageio import decode_image

Ref = tuple[str, int]
PairRef = tuple[Ref, Ref]
_SELECTION_SEED = 20220203  # fixed on purpose: evaluation pairs do not follow the training seed
GALLERY_PER_IDENTITY = 4
GALLERY_MAX = 4096
GALLERY_SIZE = 160  # the recognizer's input (FaceNet); gallery crops are kept as uint8 at most this size


@dataclass
class EvalPairs:
    """Decoded evaluation pairs; ``pairs[i]`` is ``(source_i, target_i)``.

    Attributes:
        refs: ``((source key, frame), (target key, frame))`` per pair.
        source, target: (N, 3, S, S) float32 RGB in [-1, 1], not augmented.
        source_identity, target_identity: (N,) int64 identity ids.
        source_embedding: (N, D) float32 from ``emb.npy`` when read, else None.
        gallery_refs, gallery, gallery_identity: the retrieval gallery: references, (G, 3, s, s) uint8 RGB
            crops, (G,) int64 identity ids (module docstring); empty when not loaded.
    """

    refs: list[PairRef]
    source: torch.Tensor
    target: torch.Tensor
    source_identity: torch.Tensor
    target_identity: torch.Tensor
    source_embedding: torch.Tensor | None = None
    gallery_refs: list[Ref] = field(default_factory=list)
    gallery: torch.Tensor | None = None
    gallery_identity: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.refs)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.source[index], self.target[index]

    def batches(self, batch_size: int) -> Iterator[dict[str, torch.Tensor]]:
        """The pairs in the training batch format (``same_identity`` all False), ``batch_size`` at a time."""
        for start in range(0, len(self), batch_size):
            part = slice(start, start + batch_size)
            batch = {"source": self.source[part], "target": self.target[part],
                     "same_identity": torch.zeros(len(self.refs[part]), dtype=torch.bool),
                     "source_identity": self.source_identity[part], "target_identity": self.target_identity[part]}
            if self.source_embedding is not None:
                batch["source_embedding"] = self.source_embedding[part]
            yield batch


def _scan(urls: Sequence[str], scan_groups: int) -> dict[int, list[tuple[str, int]]]:
    """identity -> [(group key, frame count)] over the first ``scan_groups`` groups of ``urls``."""
    groups: dict[int, list[tuple[str, int]]] = {}
    for scanned, group in enumerate(read_groups(urls)):
        if scanned >= scan_groups:
            break
        groups.setdefault(group.identity, []).append((group.key, len(group.frames)))
    return groups


def select_gallery(groups: dict[int, list[tuple[str, int]]], per_identity: int = GALLERY_PER_IDENTITY,
                   limit: int = GALLERY_MAX) -> list[Ref]:
    """Gallery references: every identity, ``min(per_identity, limit // identities)`` frames each (at least one)."""
    rng = np.random.default_rng(_SELECTION_SEED + 1)
    each = max(1, min(per_identity, limit // max(1, len(groups))))
    refs: list[Ref] = []
    for identity in sorted(groups):
        frames = [(key, frame) for key, count in groups[identity] for frame in range(count)]
        chosen = rng.choice(len(frames), size=min(each, len(frames)), replace=False)
        refs += [frames[int(i)] for i in sorted(chosen)]
    return refs


def select_refs(urls: Sequence[str], count: int, scan_groups: int = 4096,
                groups: dict[int, list[tuple[str, int]]] | None = None) -> list[PairRef]:
    """``count`` different-identity pair references from the first ``scan_groups`` groups of ``urls``."""
    if groups is None:
        groups = _scan(urls, scan_groups)
    identities = sorted(groups)
    if len(identities) < 2:
        raise SingleIdentityError(f"Evaluation pairs need two identities but the shards {list(urls)[:3]} hold "
                                  f"{len(identities)}; give data.val shards of several people.")
    rng = np.random.default_rng(_SELECTION_SEED)
    order = rng.permutation(len(identities))
    refs: list[PairRef] = []
    for i in range(count):
        source = int(order[i % len(identities)])
        target = int(rng.integers(len(identities) - 1))
        target += target >= source  # any index but the source's
        refs.append((_pick(groups[identities[source]], rng), _pick(groups[identities[target]], rng)))
    return refs


def _pick(candidates: list[tuple[str, int]], rng: np.random.Generator) -> Ref:
    key, frames = candidates[int(rng.integers(len(candidates)))]
    return key, int(rng.integers(frames))


def load_pairs(urls: Sequence[str], refs: Sequence[PairRef], image_size: int, embeddings: bool = False,
               gallery_refs: Sequence[Ref] = ()) -> EvalPairs:
    """Decode the referenced frames (resized to ``image_size``, no augmentation) into :class:`EvalPairs`;
    the gallery's at ``min(image_size, GALLERY_SIZE)`` px, kept as uint8."""
    wanted = {ref for pair in refs for ref in pair} | set(gallery_refs)
    wanted_keys = {key for key, _ in wanted}
    images: dict[Ref, np.ndarray] = {}
    vectors: dict[Ref, np.ndarray] = {}
    identities: dict[str, int] = {}
    view = ViewTransform(image_size, enabled=False)
    for group in read_groups(urls, embeddings):
        if group.key not in wanted_keys:
            continue
        for key, frame in wanted:
            if key != group.key:
                continue
            data = group.frames[frame] if frame < len(group.frames) else None
            image = decode_image(data, reduction(group.size, image_size)) if data is not None else None
            if image is None:
                raise FaceSwapError(f"Evaluation frame {frame} of {key} in shard {group.url} is missing or corrupt; "
                                    f"delete the evaluation pairs file to choose pairs again, or rebuild the shards.")
            images[(key, frame)] = view(image)
            identities[key] = group.identity  # namespaced when sources are joined (not the key's local id)
            if group.embeddings is not None:
                vectors[(key, frame)] = group.embeddings[frame].astype(np.float32)
        if len(images) == len(wanted):
            break
    missing = wanted - set(images)
    if missing:
        raise FaceSwapError(f"Evaluation frames {sorted(missing)[:3]} are not in the shards {list(urls)[:3]}; delete "
                            f"the evaluation pairs file to choose pairs again.")

    def stack(side: int) -> torch.Tensor:
        array = np.stack([images[pair[side]].transpose(2, 0, 1) for pair in refs])
        return to_model_range(torch.from_numpy(array))

    ids = [[identities[pair[side][0]] for pair in refs] for side in (0, 1)]
    embedding = (torch.from_numpy(np.stack([vectors[pair[0]] for pair in refs])) if embeddings else None)
    gallery = gallery_identity = None
    if gallery_refs:
        small = ViewTransform(min(image_size, GALLERY_SIZE), enabled=False)
        gallery = torch.from_numpy(np.stack([small(images[ref]).transpose(2, 0, 1) for ref in gallery_refs]))
        gallery_identity = torch.tensor([identities[key] for key, _ in gallery_refs])
    return EvalPairs(refs=list(refs), source=stack(0), target=stack(1), source_identity=torch.tensor(ids[0]),
                     target_identity=torch.tensor(ids[1]), source_embedding=embedding,
                     gallery_refs=list(gallery_refs), gallery=gallery, gallery_identity=gallery_identity)


def save_refs(path: str | Path, refs: Sequence[PairRef], gallery: Sequence[Ref] = ()) -> None:
    """Write pair (and gallery) references as JSON:
    ``{"pairs": [{"source": [key, frame], "target": [key, frame]}, ...], "gallery": [[key, frame], ...]}``."""
    data = {"pairs": [{"source": list(s), "target": list(t)} for s, t in refs], "gallery": [list(r) for r in gallery]}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(data, indent=1))


def load_refs(path: str | Path) -> tuple[list[PairRef], list[Ref] | None]:
    """Read the references written by :func:`save_refs`: (pairs, gallery or None for files without one)."""
    try:
        data = json.loads(Path(path).read_text())
        pairs = [((p["source"][0], int(p["source"][1])), (p["target"][0], int(p["target"][1])))
                 for p in data["pairs"]]
        gallery = [(key, int(frame)) for key, frame in data["gallery"]] if "gallery" in data else None
        return pairs, gallery
    except (OSError, ValueError, KeyError, TypeError, IndexError) as error:
        raise ShardSchemaError(f"Evaluation pairs file {path} is unreadable ({error}); delete it to choose the pairs "
                               f"again.") from None


def fixed_pairs(urls: Sequence[str], count: int, image_size: int, embeddings: bool = False,
                refs_file: str | Path | None = None, gallery: bool = True) -> EvalPairs:
    """The fixed evaluation pairs of ``urls`` and (with ``gallery``) the retrieval gallery, decoded: references
    read from ``refs_file`` when it exists, else chosen (:func:`select_refs`, :func:`select_gallery`) and, with
    ``refs_file``, written there."""
    path = Path(refs_file) if refs_file else None
    refs, gallery_refs = load_refs(path) if path is not None and path.is_file() else (None, None)
    if refs is None or (gallery and gallery_refs is None):
        groups = _scan(urls, 4096)
        refs = refs if refs is not None else select_refs(urls, count, groups=groups)
        gallery_refs = select_gallery(groups) if gallery else []
        if path is not None:
            save_refs(path, refs, gallery_refs)
    return load_pairs(urls, refs, image_size, embeddings, gallery_refs if gallery else ())
