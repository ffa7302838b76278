"""Pairing: a stream of identity groups -> (source, target) face pairs, decoding only the chosen JPEGs.

:class:`PairSampler` keeps two buffers, both filled from the group stream:

* the *group buffer* (``buffer`` groups): where targets come from. Once full, each newly read group
  replaces a random one, so it is a shuffle buffer over groups.
* the *source pool*: one ticket per frame of every group read, drawn in random order, so every frame of
  the stream is a source exactly once and consecutive pairs come from different groups. A group is read
  whenever the pool holds fewer than ``buffer`` tickets.

For each source ticket, with probability ``p_same`` the target is another frame of the same group (the
same frame when the group has one usable frame: augmentation then makes the two views differ), else a
frame of a group in the group buffer whose identity id differs from the source's. That difference is
guaranteed: the target group is drawn by rejection among the buffered groups of other identities; when
the buffer holds a single identity the sampler keeps reading groups (evicting at random) until another
identity arrives, and raises :class:`SingleIdentityError` if the stream ends, or ``patience`` groups
pass, without one (a dataset of one person cannot give different-identity pairs: set ``p_same=1``).

Only the two chosen JPEGs are decoded (:func:`~faceswap_pl.imageio.decode_image`; at a half, quarter or
eighth of the size when the shards' crops are that much larger than ``image_size``). A frame that does not
decode is marked unusable in its group, counted in :attr:`PairSampler.skipped`, and the pair is drawn
again; the DataLoader batches carry this count (``skipped``) so training can log it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from faceswap_pl.data.reader import Group
from faceswap_pl.errors import FaceSwapError
from faceswap_pl.imageio import decode_image


class SingleIdentityError(FaceSwapError):
    """Different-identity pairs were asked for but the stream holds one identity only."""


def reduction(size: int, image_size: int | None) -> int:
    """The largest JPEG decode reduction (1, 2, 4, 8) that keeps a ``size`` crop at least ``image_size``."""
    if not image_size:
        return 1
    return next((r for r in (8, 4, 2) if size // r >= image_size), 1)


@dataclass
class Pair:
    """One training pair before augmentation: decoded RGB crops and where they came from.

    ``source_ref`` / ``target_ref`` are ``(sample key, frame index)``; ``source_embedding`` is the
    source frame's ``emb.npy`` row when embeddings were read, else None; ``identity_source`` is the
    source frame's separately augmented view for the identity encoder, when the loader makes one.
    """

    source: np.ndarray
    target: np.ndarray
    same_identity: bool
    source_identity: int
    target_identity: int
    source_ref: tuple[str, int]
    target_ref: tuple[str, int]
    source_embedding: np.ndarray | None = None
    identity_source: np.ndarray | None = None


class PairSampler:
    """Iterates :class:`Pair` s from an iterator of :class:`Group` s (see the module docstring).

    Args:
        groups: the group stream (endless for training; finite streams end the pairs when used up).
        rng: the generator for every choice (seed it per rank and worker for a deterministic stream).
        p_same: probability that the target comes from the source's own group.
        buffer: group-buffer capacity (and the source pool's refill mark), in groups.
        patience: groups read without finding a second identity before :class:`SingleIdentityError`
            (default ``max(4 * buffer, 1000)``).
        image_size: the size the crops are used at (lets larger crops decode reduced); None: full size.
    """

    def __init__(self, groups: Iterable[Group], rng: np.random.Generator, p_same: float = 0.2, buffer: int = 256,
                 patience: int | None = None, image_size: int | None = None) -> None:
        if not 0.0 <= p_same <= 1.0:
            raise FaceSwapError(f"p_same={p_same} is outside [0, 1]; set data.p_same to a probability (GHOST: 0.2).")
        if buffer < 1:
            raise FaceSwapError(f"buffer={buffer} must be at least 1 group; set data.buffer to e.g. 256.")
        self.groups = iter(groups)
        self.rng = rng
        self.p_same = p_same
        self.buffer = buffer
        self.patience = patience if patience is not None else max(4 * buffer, 1000)
        self.image_size = image_size
        self.skipped = 0  # frames that failed to decode
        self._held: list[Group] = []
        self._pool: list[tuple[Group, int]] = []
        self._exhausted = False

    # -- buffers -------------------------------------------------------------------------------
    def _read(self) -> bool:
        """Read one group into both buffers; False once the stream is exhausted."""
        if self._exhausted:
            return False
        try:
            group = next(self.groups)
        except StopIteration:
            self._exhausted = True
            return False
        if len(self._held) < self.buffer:
            self._held.append(group)
        else:
            self._held[int(self.rng.integers(len(self._held)))] = group
        self._pool.extend((group, index) for index in range(len(group.frames)))
        return True

    def _fill(self) -> None:
        while len(self._held) < self.buffer and self._read():
            pass
        while len(self._pool) < self.buffer and self._read():
            pass

    def _take_ticket(self) -> tuple[Group, int] | None:
        while self._pool:
            i = int(self.rng.integers(len(self._pool)))
            self._pool[i], self._pool[-1] = self._pool[-1], self._pool[i]
            group, index = self._pool.pop()
            if group.frames[index] is not None:
                return group, index
        return None

    # -- choices -------------------------------------------------------------------------------
    def _other_identity(self, identity: int) -> Group:
        """A uniformly chosen buffered group (with a usable frame) whose identity differs from ``identity``."""
        for _ in range(32):  # rejection: one or two tries when the buffer holds many identities
            group = self._held[int(self.rng.integers(len(self._held)))]
            if group.identity != identity and group.usable():
                return group
        read = 0
        while True:
            others = [g for g in self._held if g.identity != identity and g.usable()]
            if others:
                return others[int(self.rng.integers(len(others)))]
            if read >= self.patience or not self._read():
                raise SingleIdentityError(
                    f"Only identity {identity} was found in {len(self._held) + read} buffered groups of the shards "
                    f"(last: {self._held[-1].url}), so no different-identity target exists; add shards with other "
                    f"identities, raise data.buffer, or set data.p_same=1.0.")
            read += 1

    def _decode(self, group: Group, index: int) -> np.ndarray | None:
        data = group.frames[index]
        image = decode_image(data, reduction(group.size, self.image_size)) if data is not None else None
        if image is None and data is not None:
            group.frames[index] = None
            self.skipped += 1
        return image

    def _target(self, group: Group, index: int, source: np.ndarray, same: bool
                ) -> tuple[Group, int, np.ndarray] | None:
        for _ in range(64):
            if same:
                candidates = [i for i in group.usable() if i != index]
                if not candidates:
                    return group, index, source.copy()  # one usable frame: the same crop, two augmentations
                target_group = group
            else:
                target_group = self._other_identity(group.identity)
                candidates = target_group.usable()
            target_index = candidates[int(self.rng.integers(len(candidates)))]
            image = self._decode(target_group, target_index)
            if image is not None:
                return target_group, target_index, image
        return None

    # -- iteration -----------------------------------------------------------------------------
    def __iter__(self) -> Iterator[Pair]:
        while True:
            self._fill()
            ticket = self._take_ticket()
            if ticket is None:
                return
            group, index = ticket
            source = self._decode(group, index)
            if source is None:
                continue
            same = bool(self.rng.random() < self.p_same)
            chosen = self._target(group, index, source, same)
            if chosen is None:
                continue
            target_group, target_index, target = chosen
            embedding = None if group.embeddings is None else group.embeddings[index].astype(np.float32)
            yield Pair(source=source, target=target, same_identity=same,
                       source_identity=group.identity, target_identity=target_group.identity,
                       source_ref=(group.key, index), target_ref=(target_group.key, target_index),
                       source_embedding=embedding)
