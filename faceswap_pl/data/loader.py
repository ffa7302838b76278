"""The pair stream as an ``IterableDataset`` and its fixed-length WebDataset loader.

:class:`PairDataset` runs in each DataLoader worker: shards in :func:`~faceswap_pl.data.reader.shard_order`
(split by rank, then by worker, or resampled), groups from
:func:`~faceswap_pl.data.reader.read_groups`, pairs from :class:`~faceswap_pl.data.pairs.PairSampler`,
two independently augmented views, and batches collated in the worker. Every random choice comes
from generators seeded by (seed, epoch, rank, worker): the same seed gives the same stream.

The stream never ends; :class:`PairLoader` (a ``webdataset.WebLoader``) sets the epoch length with
``with_epoch(batches)``, so every rank runs the same number of steps per epoch whatever its shards
hold -- under DDP no rank waits in a collective for a rank that ran out of data. Each new epoch
(``iter`` of the loader) advances the dataset's epoch counter, which reseeds the stream: in the main
process without workers, or in the persistent workers (the loader always keeps its workers).

Workers send ``uint8`` images (a quarter of the bytes of float); the loader turns them into the batch
format of :mod:`faceswap_pl.training.module` in the main process:

=====================  ==========================================================================
``source``, ``target``  (B, 3, S, S) float32 RGB in [-1, 1]
``identity_source``     (B, 3, I, I) float32 in [-1, 1], only with ``identity_size=I``: the source frame
                        augmented on its own for the identity encoder (GHOST's ``Xs_orig``, I = 224)
``same_identity``       (B,) bool
``source_identity``     (B,) int64 identity ids (``target_identity`` likewise)
``skipped``             () int64: corrupt JPEGs the producing worker skipped since its previous batch
``source_embedding``    (B, D) float32 from ``emb.npy``, only with ``use_embeddings=True``
=====================  ==========================================================================

The loader adds ``skipped`` up in :attr:`PairLoader.corrupt_frames` and warns at the end of an
epoch in which frames were skipped.

Exact resumption: :class:`PairLoader` is a Lightning stateful loader (``state_dict`` / ``load_state_dict``),
so its position -- the epoch of the stream and the batches the training loop has taken from it -- is saved in
every checkpoint (``loops.fit_loop.state_dict.combined_loader``). A restored loader starts that epoch's stream
again (every random choice is seeded by seed, epoch, rank and worker) and drops the batches already trained
on, so a resumed run sees exactly the batches of the run that was never stopped, with any number of workers.
Dropping costs the reading, decoding and augmenting of those batches (a fraction of an epoch). A position
saved with another seed, number of processes or of workers belongs to another stream: the loader warns and
starts the next epoch.

Workers start with ``forkserver`` by default, not ``fork``: a worker forked from a process whose
OpenCV thread pool has run (any ``cv2`` resize or warp in the main process, e.g. in a callback or an
earlier evaluation) inherits that pool's locks without its threads and can hang forever in its
first ``cv2`` call. ``forkserver`` forks the workers from a clean server process that has imported
this module once, so they start in about a second and share no thread state with the trainer.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import re
from collections.abc import Iterator, Sequence
from multiprocessing import forkserver

import cv2
import numpy as np
import torch
import webdataset as wds
from torch.utils.data import IterableDataset, get_worker_info

from faceswap_pl.data.augment import AugmentSpec, ViewTransform, to_model_range
from faceswap_pl.data.pairs import Pair, PairSampler
from faceswap_pl.data.reader import read_groups, shard_order
from faceswap_pl.errors import FaceSwapError

log = logging.getLogger(__name__)

START_METHODS = ("forkserver", "spawn", "fork")


def worker_context(start_method: str) -> multiprocessing.context.BaseContext:
    """The multiprocessing context DataLoader workers start with (``forkserver`` preloads this module)."""
    if start_method not in START_METHODS:
        raise FaceSwapError(f"Worker start method {start_method!r} is not one of {', '.join(START_METHODS)}; "
                            f"use forkserver (the default).")
    context = multiprocessing.get_context(start_method)
    if start_method == "forkserver":
        _forget_inherited_forkserver()
        context.set_forkserver_preload([__name__])  # takes effect when the server starts (the first time)
    return context


def _forget_inherited_forkserver() -> None:
    """Start a new fork server in a process that inherited another's through ``fork``.

    A process forked after its parent started the fork server (``ddp_fork``, ``mp.start_processes``
    with fork) holds the parent's server state; multiprocessing then fails with "No child processes"
    when it checks on a server that is not its child. Forgetting that state makes it start its own.
    """
    server = getattr(forkserver, "_forkserver", None)
    pid = getattr(server, "_forkserver_pid", None)
    if pid is None:
        return
    with server._lock:
        try:
            alive = os.waitpid(pid, os.WNOHANG)[0] == 0
        except ChildProcessError:
            alive = False
        if not alive:
            with contextlib.suppress(OSError, TypeError):
                os.close(server._forkserver_alive_fd)
            server._forkserver_address = server._forkserver_alive_fd = server._forkserver_pid = None


def _stack_images(images: Sequence[np.ndarray]) -> torch.Tensor:
    """(H, W, 3) uint8 images -> (N, 3, H, W) uint8, in shared memory inside a worker (no copy when sent)."""
    size = images[0].shape[0]
    tensor = torch.empty((len(images), 3, size, size), dtype=torch.uint8)
    if get_worker_info() is not None:
        tensor.share_memory_()
    array = tensor.numpy()
    for i, image in enumerate(images):
        array[i] = image.transpose(2, 0, 1)
    return tensor


def collate(pairs: Sequence[Pair], skipped: int = 0) -> dict[str, torch.Tensor]:
    """Pairs -> a worker-side batch (images still uint8 CHW)."""
    batch = {
        "source": _stack_images([p.source for p in pairs]), "target": _stack_images([p.target for p in pairs]),
        "same_identity": torch.tensor([p.same_identity for p in pairs], dtype=torch.bool),
        "source_identity": torch.tensor([p.source_identity for p in pairs], dtype=torch.int64),
        "target_identity": torch.tensor([p.target_identity for p in pairs], dtype=torch.int64),
        "skipped": torch.tensor(skipped, dtype=torch.int64),
    }
    if pairs[0].identity_source is not None:
        batch["identity_source"] = _stack_images([p.identity_source for p in pairs])
    if pairs[0].source_embedding is not None:
        batch["source_embedding"] = torch.from_numpy(np.stack([p.source_embedding for p in pairs]))
    return batch


class PairDataset(IterableDataset):
    """Endless stream of collated pair batches for one rank (see the module docstring).

    Args:
        urls: shard URLs (:func:`~faceswap_pl.data.reader.resolve_shards`).
        image_size: output crop size (shards of another size are resized).
        batch_size: pairs per batch.
        p_same: probability of a same-group target.
        buffer: groups held for pairing per worker.
        augment: albumentations spec (:mod:`faceswap_pl.data.augment`); ignored when ``train=False``.
        use_embeddings: read ``emb.npy`` and add ``source_embedding``.
        seed: base seed of every random choice.
        rank, world_size: this process's place under DDP (taken in the main process, so workers know it).
        train: True: shuffled shard order, augmentation, a new stream every epoch. False (validation):
            listed shard order, no augmentation, the same stream every time.
        epoch: the first epoch's number (set it to the trainer's epoch when resuming).
        identity_size: also give each pair ``identity_source``: the source frame at this size, augmented
            independently of ``source`` (GHOST's ``Xs_orig``: 224); None: no such view.
    """

    def __init__(self, urls: Sequence[str], *, image_size: int = 256, batch_size: int = 16, p_same: float = 0.2,
                 buffer: int = 256, augment: AugmentSpec = None, use_embeddings: bool = False, seed: int = 0,
                 rank: int = 0, world_size: int = 1, train: bool = True, epoch: int = 0,
                 identity_size: int | None = None) -> None:
        super().__init__()
        self.urls = list(urls)
        self.image_size, self.batch_size, self.p_same, self.buffer = image_size, batch_size, p_same, buffer
        self.use_embeddings, self.seed, self.rank, self.world_size = use_embeddings, seed, rank, world_size
        self.train = train
        self.epoch = epoch
        self.start_method = "forkserver"  # how workers start; PairLoader sets it
        self.view = ViewTransform(image_size, augment, enabled=train)  # built here: config errors show at once
        self.identity_view = ViewTransform(identity_size, augment, enabled=train) if identity_size else None

    def sampler(self, worker: int = 0, num_workers: int = 1, epoch: int | None = None) -> PairSampler:
        """The pair sampler of one worker slot and epoch (validation: always epoch 0); seeds the view too."""
        epoch = (self.epoch if epoch is None else epoch) if self.train else 0
        order = shard_order(self.urls, seed=self.seed, epoch=epoch, rank=self.rank, world_size=self.world_size,
                            worker=worker, num_workers=num_workers, shuffle=self.train)
        self.view.seed(np.random.default_rng([self.seed, epoch, self.rank, worker, 2]))
        if self.identity_view is not None:
            self.identity_view.seed(np.random.default_rng([self.seed, epoch, self.rank, worker, 3]))
        return PairSampler(read_groups(order, self.use_embeddings),
                           np.random.default_rng([self.seed, epoch, self.rank, worker, 0]),
                           p_same=self.p_same, buffer=self.buffer, image_size=self.image_size)

    def augmented(self, pairs: Iterator[Pair]) -> Iterator[Pair]:
        """Each pair with its views resized and independently augmented (the identity view from the source frame)."""
        for pair in pairs:
            if self.identity_view is not None:
                pair.identity_source = self.identity_view(pair.source)
            pair.source, pair.target = self.view(pair.source), self.view(pair.target)
            yield pair

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        info = get_worker_info()
        worker, num_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        if info is not None and self.start_method != "fork":
            cv2.setNumThreads(1)  # one thread per worker: the workers are the parallelism (never after a fork:
            # resizing a pool whose threads stayed in the parent hangs)
        epoch = self.epoch
        if self.train:
            self.epoch += 1  # this copy lives on (main process, or a persistent worker): next iter = next epoch
        sampler = self.sampler(worker, num_workers, epoch)
        pending: list[Pair] = []
        reported = 0
        for pair in self.augmented(iter(sampler)):
            pending.append(pair)
            if len(pending) == self.batch_size:
                yield collate(pending, sampler.skipped - reported)
                reported, pending = sampler.skipped, []


def _unwrap_worker_error(error: FaceSwapError) -> FaceSwapError:
    """A FaceSwapError re-raised from a DataLoader worker, with its sentence instead of the worker traceback."""
    text = str(error)
    if "Traceback" not in text:
        return error
    last = [line for line in text.strip().splitlines() if line.strip()][-1]
    match = re.match(rf"^[\w.]*{type(error).__name__}: (.*)$", last)
    try:
        return type(error)(match.group(1)) if match else error
    except Exception:
        return error


class _EpochSignal:
    """What Lightning takes for a loader's sampler: it calls :meth:`set_epoch` with its own epoch at the start of
    every training epoch (restored runs included), which :class:`PairLoader` needs after a restore."""

    def __init__(self, loader: "PairLoader") -> None:
        self.loader = loader

    def set_epoch(self, epoch: int) -> None:
        self.loader.lightning_epoch(epoch)


class PairLoader(wds.WebLoader):
    """DataLoader over a :class:`PairDataset` with a fixed number of batches per epoch.

    Args:
        dataset: the pair stream (it batches itself; the DataLoader passes batches through).
        batches: batches per epoch (``with_epoch``); ``len(loader)`` returns it.
        num_workers: DataLoader worker processes (kept between epochs).
        pin_memory: write the float images into pinned memory (default: when CUDA is available).
        start_method: how workers start: ``forkserver`` (default), ``spawn`` or ``fork`` (see the module
            docstring for why not ``fork``).
    """

    def __init__(self, dataset: PairDataset, batches: int, num_workers: int = 0, pin_memory: bool | None = None,
                 prefetch_factor: int = 2, start_method: str = "forkserver") -> None:
        if batches < 1:
            raise FaceSwapError(f"An epoch of {batches} batches is empty; raise data.epoch_pairs / data.val_pairs "
                                f"to at least batch_size x number of processes.")
        context = worker_context(start_method)
        dataset.start_method = start_method
        options = {"persistent_workers": True, "prefetch_factor": prefetch_factor,
                   "multiprocessing_context": context} if num_workers > 0 else {}
        super().__init__(dataset, batch_size=None, num_workers=num_workers, **options)
        self.pin_memory = torch.cuda.is_available() if pin_memory is None else pin_memory
        self.with_epoch(batches)
        self.pairs = dataset
        self.batches = batches
        self.corrupt_frames = 0
        self._next_epoch = dataset.epoch  # the epoch the next iter() streams
        self._epoch = dataset.epoch  # the epoch being streamed
        self._taken = 0  # batches of it the consumer has taken (see __iter__)
        self._drop = 0  # batches to drop at the start of the next iter() (a restored position)
        self._restored = False  # a position was loaded and Lightning has not started an epoch since
        self.sampler = _EpochSignal(self)
        self.batch_sampler = None  # read by Lightning next to ``sampler`` (the stream batches itself)

    def __len__(self) -> int:
        return self.batches

    def state_dict(self) -> dict[str, int]:
        """The stream's position, which Lightning saves in checkpoints: ``epoch`` and ``taken`` (batches of it
        trained on), and what defines the stream (``seed``, ``world_size``, ``workers``; ``rank`` for reading)."""
        data = self.pairs
        return {"epoch": self._epoch, "taken": self._taken, "seed": data.seed, "rank": data.rank,
                "world_size": data.world_size, "workers": self.pipeline[0].num_workers}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Continue from a saved position: the next iter() streams ``epoch`` again, minus its first ``taken``
        batches (the next epoch when all were taken). Every rank loads rank 0's position: ranks step together.

        A stream saved with another seed, number of processes or of loader workers is another stream: the run
        warns and continues with the epoch after the saved one (its remaining pairs are not seen)."""
        data = self.pairs
        epoch, taken = int(state["epoch"]), int(state["taken"])
        saved = {"seed": state.get("seed"), "world_size": state.get("world_size"), "workers": state.get("workers")}
        here = {"seed": data.seed, "world_size": data.world_size, "workers": self.pipeline[0].num_workers}
        differ = [f"{key} {saved[key]} -> {here[key]}" for key in saved if saved[key] not in (None, here[key])]
        if differ:
            log.warning("The checkpoint's data stream was read with another %s; the resumed run cannot continue "
                        "it exactly and starts the next epoch (%d). Resume with the same data.seed, number of "
                        "processes and data.num_workers for an exact continuation.", ", ".join(differ), epoch + 1)
            epoch, taken = epoch + 1, 0
        elif data.train and taken >= self.batches:  # saved after the epoch's last batch: the next one starts afresh
            epoch, taken = epoch + 1, 0
        self._next_epoch = data.epoch = epoch
        self._drop = taken
        self._restored = True

    def lightning_epoch(self, epoch: int) -> None:
        """Lightning's epoch, at the start of each training epoch. After a restore, an epoch other than the saved
        one means Lightning counts the saved epoch as finished (``trainer.limit_train_batches`` below the loader's
        length ends epochs early): that epoch is then streamed from its start."""
        if self.pairs.train and self._restored and epoch != self._next_epoch:
            self._next_epoch = self.pairs.epoch = epoch
            self._drop = 0
        self._restored = False

    def shutdown(self) -> None:
        """Stop the (persistent) worker processes now; the next epoch starts new ones."""
        loader = self.pipeline[0]
        iterator = getattr(loader, "_iterator", None)  # DataLoader keeps its iterator with persistent workers
        if iterator is not None and hasattr(iterator, "_shutdown_workers"):
            iterator._shutdown_workers()
            loader._iterator = None

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        self._epoch, self._taken = self._next_epoch, 0
        if self.pairs.train:
            self._next_epoch += 1  # the dataset copies advance their epoch on every iter() as well
        drop, self._drop = self._drop, 0
        stream = super().__iter__()
        skipped = 0
        while True:
            try:
                batch = next(stream)
            except StopIteration:
                break
            except FaceSwapError as error:
                self.shutdown()
                raise _unwrap_worker_error(error) from None
            if drop:  # trained on before the checkpoint this run resumes from
                drop -= 1
                self._taken += 1
                continue
            for key in ("source", "target", "identity_source"):
                if key in batch:
                    batch[key] = to_model_range(batch[key], self.pin_memory)
            skipped += int(batch["skipped"])
            # counted before it is handed over: a checkpoint written while the loop trains on this batch (or
            # after it) must not see it again. Lightning does not fetch ahead from a loader with a length.
            self._taken += 1
            yield batch
        self.corrupt_frames += skipped
        if skipped:
            log.warning("Rank %d skipped %d corrupt JPEG frame(s) this epoch (%d in total) in %s; rebuild those "
                        "shards with `faceswap-pl shards build` to use them.", self.pairs.rank, skipped,
                        self.corrupt_frames, "the shards" if len(self.pairs.urls) > 3 else self.pairs.urls)
