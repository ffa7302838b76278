"""``FaceSwapDataModule``: training and validation pairs streamed from identity-group shards.

Choose it in a config (``experiments/data/shards.yaml``)::

    data:
      class_path: faceswap_pl.data.FaceSwapDataModule
      init_args: {train: data/demo/train, val: data/demo/val, batch_size: 16}

Epoch length under DDP: an epoch is ``ceil(epoch_pairs / (batch_size * world_size))`` batches on
every rank (``PairLoader.with_epoch``), so ranks always take the same number of steps, whatever
their share of shards holds. ``epoch_pairs`` defaults to the number of frames in the training
manifest (each frame about once a source per epoch).

Corrupt JPEGs are skipped in the workers; each batch carries ``skipped`` (the count since the
worker's previous batch) for the module to log, the loaders warn at the end of an epoch with skips,
and :attr:`FaceSwapDataModule.corrupt_frames` is this rank's running total.
"""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch

from faceswap_pl.data.augment import build_augment
from faceswap_pl.data.evalpairs import EvalPairs, fixed_pairs
from faceswap_pl.data.loader import START_METHODS, PairDataset, PairLoader
from faceswap_pl.data.reader import manifest_of, resolve_shards, split_sources
from faceswap_pl.errors import FaceSwapError


class FaceSwapDataModule(L.LightningDataModule):
    """Pairs from WebDataset shards (:mod:`faceswap_pl.data.schema`) in the batch format of the module.

    Args:
        train: training shards: a dataset folder (with ``manifest.json``), a path, glob, brace list
            (``shard-{000000..000009}.tar``), ``pipe:`` URL, or several joined with ``::``.
        val: validation shards (same forms), or None for no validation.
        image_size: crop size the model takes; shards of another size are resized.
        batch_size: pairs per batch on each rank.
        num_workers: DataLoader worker processes per rank (kept alive between epochs).
        worker_start: how workers start: ``forkserver`` (default; safe after OpenCV ran in the trainer),
            ``spawn``, or ``fork`` (fastest start, but can hang in OpenCV, see :mod:`faceswap_pl.data.loader`).
        p_same: probability that the target is another frame of the source's group (GHOST: 0.2).
        epoch_pairs: pairs per epoch over all ranks; default: frames in the training manifest.
        val_pairs: pairs per validation run over all ranks (the same pairs every run).
        buffer: groups each worker holds for pairing (a shuffle buffer; memory ~ buffer x group bytes).
        augment: list of ``{name: <albumentations transform>, ...}``; None: GHOST's ColorJitter(0.2, 0.2,
            0.2, 0.01) on each view; ``[]``: none. Validation is never augmented.
        use_embeddings: read ``emb.npy`` and add ``source_embedding`` to the batches (features computed when the
            shards were built, from the un-augmented crop: faster, but the identity encoder never sees the
            augmented source view; checked against ``model.identity_encoder`` when training starts).
        identity_view: also give the identity encoder its own view of the source frame at this size,
            augmented independently of the ``source`` the discriminator sees as real (GHOST's ``Xs_orig``:
            224); None: the identity encoder sees ``source``.
        seed: seed of shard order, pairing and augmentation (the same seed gives the same stream).
        eval_pairs: number of fixed evaluation pairs (:meth:`eval_pairs`).
        eval_pairs_file: JSON file of the evaluation pair references: read when it exists, else written.
    """

    def __init__(self, train: str | list[str], val: str | list[str] | None = None, image_size: int = 256,
                 batch_size: int = 16, num_workers: int = 2, p_same: float = 0.2, epoch_pairs: int | None = None,
                 val_pairs: int = 256, buffer: int = 256, augment: list[dict[str, Any]] | None = None,
                 use_embeddings: bool = False, seed: int = 0, eval_pairs: int = 64,
                 eval_pairs_file: str | None = None, worker_start: str = "forkserver",
                 identity_view: int | None = None) -> None:
        super().__init__()
        self.save_hyperparameters()
        for name, value in (("image_size", image_size), ("batch_size", batch_size), ("buffer", buffer),
                            ("val_pairs", val_pairs), ("eval_pairs", eval_pairs),
                            ("identity_view", 1 if identity_view is None else identity_view)):
            if value < 1:
                raise FaceSwapError(f"data.{name}={value} must be at least 1.")
        if not 0.0 <= p_same <= 1.0:
            raise FaceSwapError(f"data.p_same={p_same} is outside [0, 1]; give a probability (GHOST: 0.2).")
        if num_workers < 0:
            raise FaceSwapError(f"data.num_workers={num_workers} must be 0 or more.")
        if worker_start not in START_METHODS:
            raise FaceSwapError(f"data.worker_start={worker_start!r} is not one of {', '.join(START_METHODS)}; "
                                f"use forkserver (the default).")
        build_augment(augment)  # configuration errors surface when the config is parsed, not in a worker
        self._loaders: list[PairLoader] = []
        self._eval: EvalPairs | None = None

    # -- placement -----------------------------------------------------------------------------
    def _placement(self) -> tuple[int, int, int]:
        """(rank, world size, current epoch) from the trainer, else torch.distributed, else (0, 1, 0)."""
        trainer = self.trainer
        if trainer is not None:
            return trainer.global_rank, trainer.world_size, trainer.current_epoch
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            return torch.distributed.get_rank(), torch.distributed.get_world_size(), 0
        return 0, 1, 0

    def _epoch_pairs(self) -> int:
        if self.hparams.epoch_pairs is not None:
            return self.hparams.epoch_pairs
        manifest = manifest_of(self.hparams.train)
        if manifest is None:
            raise FaceSwapError("data.epoch_pairs is needed when data.train is not a dataset folder with "
                                "manifest.json; set it, e.g. --data.epoch_pairs=10000.")
        return manifest.frames

    def _loader(self, spec: str | list[str], pairs: int, train: bool) -> PairLoader:
        hp = self.hparams
        rank, world_size, epoch = self._placement()
        dataset = PairDataset(resolve_shards(spec), image_size=hp.image_size, batch_size=hp.batch_size,
                              p_same=hp.p_same, buffer=hp.buffer, augment=hp.augment,
                              use_embeddings=hp.use_embeddings, seed=hp.seed, rank=rank, world_size=world_size,
                              train=train, epoch=epoch, identity_size=hp.identity_view if train else None)
        loader = PairLoader(dataset, math.ceil(pairs / (hp.batch_size * world_size)), num_workers=hp.num_workers,
                            start_method=hp.worker_start)
        self._loaders.append(loader)
        return loader

    # -- Lightning -----------------------------------------------------------------------------
    def train_dataloader(self) -> PairLoader:
        """Endless augmented pairs, ``ceil(epoch_pairs / (batch_size * world_size))`` batches per epoch."""
        return self._loader(self.hparams.train, self._epoch_pairs(), train=True)

    def val_dataloader(self) -> PairLoader | list:
        """The same un-augmented pairs every run (``[]``, i.e. no validation, without ``val``)."""
        if self.hparams.val is None:
            return []
        return self._loader(self.hparams.val, self.hparams.val_pairs, train=False)


    def precomputed_embeddings(self) -> dict[str, str] | None:
        """``{"encoder": name, "vector": "raw" | "unit"}`` of the training shards' ``emb.npy`` (None when unused).

        Read from the manifest of every dataset folder in ``train``; folders that disagree are refused.
        """
        if not self.hparams.use_embeddings:
            return None
        found = {}
        for source in split_sources(self.hparams.train):
            manifest = manifest_of(source)
            if manifest is not None:
                found[source] = (manifest.embedding, manifest.embedding_vector)
        if not found:
            return None
        if len(set(found.values())) > 1:
            listed = "; ".join(f"{source}: {name} ({vector})" for source, (name, vector) in found.items())
            raise FaceSwapError(f"The joined training datasets hold embeddings of different encoders or kinds ({listed}); "
                                f"rebuild them with the same --embeddings or set data.use_embeddings=false.")
        name, vector = next(iter(found.values()))
        if name is None:
            raise FaceSwapError(f"data.use_embeddings is on but {next(iter(found))} was built without embeddings; "
                                f"rebuild it with `faceswap-pl shards build --embeddings ENCODER` or set "
                                f"data.use_embeddings=false.")
        return {"encoder": name, "vector": vector}

    @property
    def corrupt_frames(self) -> int:
        """Corrupt JPEG frames this rank's loaders have skipped so far."""
        return sum(loader.corrupt_frames for loader in self._loaders)

    # -- evaluation ----------------------------------------------------------------------------
    def eval_pairs(self) -> EvalPairs:
        """The fixed evaluation pairs from ``val`` (``train`` without it): the same on every call and seed.

        With ``eval_pairs_file`` the references are read from it when it exists, else chosen and written.
        """
        if self._eval is None:
            hp = self.hparams
            urls = resolve_shards(hp.val if hp.val is not None else hp.train)
            self._eval = fixed_pairs(urls, hp.eval_pairs, hp.image_size, hp.use_embeddings, hp.eval_pairs_file)
        return self._eval
