"""Batches in GHOST's layout, saved to one file and replayed in order: the same batches for GHOST's train.py
and for faceswap_pl.

The file is a ``torch.save`` of a list whose items are GHOST's batches ``(Xs_orig, Xs, Xt, same_person)``:
``Xs_orig`` (B, 3, 224, 224), ``Xs`` and ``Xt`` (B, 3, 256, 256) float RGB in [-1, 1] (GHOST's
``Normalize(0.5, 0.5)``), ``same_person`` (B,) 0/1. Dicts with those four keys are read as well. In GHOST's
train.py the list can stand in for the DataLoader as it is (``for iteration, data in enumerate(batches)``
unpacks the same tuples). It is read with ``torch.load(weights_only=True, mmap=True)``: nothing in it can
run code, and large files are paged in as they are used.

Here the batches become the module's batch format: ``identity_source`` = ``Xs_orig`` (what the identity
encoder sees), ``source`` = ``Xs`` (what the discriminator sees as real), ``target`` = ``Xt``,
``same_identity`` = ``same_person``. Choose the source in a config::

    data:
      class_path: faceswap_pl.data.TensorBatchDataModule
      init_args: {path: batches.pt}

:func:`record_batches` writes such a file from any batch stream (``faceswap-pl batches record`` from shards).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from faceswap_pl.errors import FaceSwapError
from faceswap_pl.files import atomic_write

#: GHOST's batch fields in order, and the module's names for them
GHOST_FIELDS = ("Xs_orig", "Xs", "Xt", "same_person")
MODULE_NAMES = {"Xs_orig": "identity_source", "Xs": "source", "Xt": "target", "same_person": "same_identity"}
_RANGE_SLACK = 1e-3  # values may overshoot [-1, 1] by rounding


class TensorBatchError(FaceSwapError):
    """A batch file is missing, unreadable, or not in GHOST's batch layout."""


def _fields(item: Any, where: str) -> dict[str, torch.Tensor]:
    if isinstance(item, Mapping):
        missing = [name for name in GHOST_FIELDS if name not in item]
        if missing:
            raise TensorBatchError(f"{where} lacks {', '.join(missing)}; each batch needs {', '.join(GHOST_FIELDS)}.")
        values = {name: item[name] for name in GHOST_FIELDS}
    elif isinstance(item, Sequence) and len(item) == len(GHOST_FIELDS):
        values = dict(zip(GHOST_FIELDS, item))
    else:
        raise TensorBatchError(f"{where} is a {type(item).__name__}, not a tuple (Xs_orig, Xs, Xt, same_person) "
                               f"or a dict with those keys.")
    for name, value in values.items():
        if not isinstance(value, torch.Tensor):
            raise TensorBatchError(f"{where}: {name} is a {type(value).__name__}, not a tensor.")
    return values


def check_batch(item: Any, where: str = "batch") -> dict[str, torch.Tensor]:
    """GHOST's batch (tuple or dict) -> the module's batch dict, after checking shapes and ranges.

    Raises:
        TensorBatchError: one sentence naming the batch, the field and what it should be.
    """
    values = _fields(item, where)
    size = values["Xs"].shape[0]
    for name in ("Xs_orig", "Xs", "Xt"):
        image = values[name]
        if image.ndim != 4 or image.shape[1] != 3 or image.shape[0] != size or image.shape[-1] != image.shape[-2]:
            raise TensorBatchError(f"{where}: {name} has shape {tuple(image.shape)}; it must be ({size}, 3, S, S) "
                                   f"(GHOST: 224 for Xs_orig, 256 for Xs and Xt).")
        if not image.is_floating_point():
            raise TensorBatchError(f"{where}: {name} is {image.dtype}; save float images normalised to [-1, 1].")
        low, high = float(image.min()), float(image.max())
        if low < -1 - _RANGE_SLACK or high > 1 + _RANGE_SLACK:
            raise TensorBatchError(f"{where}: {name} spans [{low:.3g}, {high:.3g}], not [-1, 1]; normalise as GHOST "
                                   f"does, (pixel / 255 - 0.5) / 0.5.")
    if values["Xs"].shape != values["Xt"].shape:
        raise TensorBatchError(f"{where}: Xs {tuple(values['Xs'].shape)} and Xt {tuple(values['Xt'].shape)} differ; "
                               f"the generator's source and target come at one size.")
    same = values["same_person"]
    if same.shape != (size,):
        raise TensorBatchError(f"{where}: same_person has shape {tuple(same.shape)}; it must be ({size},) of 0/1.")
    batch = {MODULE_NAMES[name]: values[name].float() for name in ("Xs_orig", "Xs", "Xt")}
    batch["same_identity"] = same.bool()
    return batch


def read_batches(path: str | Path) -> list[dict[str, torch.Tensor]]:
    """Every batch of a batch file in the module's format (module docstring), checked.

    Raises:
        TensorBatchError: missing, unreadable or foreign files; a batch of the wrong layout.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise TensorBatchError(f"Batch file {path} does not exist; write one with `faceswap-pl batches record` or "
                               f"torch.save a list of GHOST's (Xs_orig, Xs, Xt, same_person) batches.")
    try:
        items = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as error:  # truncated zip, not a torch file, a pickle with code in it
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise TensorBatchError(f"Cannot read the batch file {path} ({type(error).__name__}: {reason[:200]}); write "
                               f"it again with torch.save of a list of tensor tuples.") from None
    if isinstance(items, Mapping) and "batches" in items:
        items = items["batches"]
    if not isinstance(items, Sequence) or isinstance(items, (str, bytes)) or not items:
        raise TensorBatchError(f"{path} holds a {type(items).__name__}, not a non-empty list of batches "
                               f"(Xs_orig, Xs, Xt, same_person).")
    batches = [check_batch(item, f"batch {i} of {path}") for i, item in enumerate(items)]
    shapes = {tuple(b["source"].shape[1:]) for b in batches}
    if len(shapes) > 1:
        raise TensorBatchError(f"{path} mixes image sizes {sorted(shapes)}; record every batch at one size.")
    return batches


def record_batches(batches: Iterable[Mapping[str, torch.Tensor]], path: str | Path, count: int) -> int:
    """Write the first ``count`` batches of a module-format stream as GHOST's tuples; returns how many.

    Each batch needs ``identity_source``, ``source``, ``target`` and ``same_identity``. Written through a
    temporary file and a rename, so an interrupted recording leaves no half file.
    """
    if count < 1:
        raise TensorBatchError(f"Record at least one batch (got {count}).")
    recorded = []
    for batch in batches:
        missing = [MODULE_NAMES[name] for name in GHOST_FIELDS if MODULE_NAMES[name] not in batch]
        if missing:
            raise TensorBatchError(f"The batches lack {', '.join(missing)}; record from a datamodule with "
                                   f"identity_view set (GHOST: 224).")
        recorded.append(tuple(batch[MODULE_NAMES[name]].detach().cpu().contiguous().clone() if name != "same_person"
                              else batch["same_identity"].detach().cpu().long() for name in GHOST_FIELDS))
        if len(recorded) == count:
            break
    if len(recorded) < count:
        raise TensorBatchError(f"The stream ended after {len(recorded)} of {count} batches.")
    atomic_write(path, functools.partial(torch.save, recorded))
    return len(recorded)


class TensorBatches(Dataset):
    """The batches of one file, in order (``len`` = number of batches)."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self.batches = read_batches(path)

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return dict(self.batches[index])


class TensorBatchDataModule(L.LightningDataModule):
    """Replays a batch file (module docstring) in order, one epoch = the whole file.

    Args:
        path: training batch file.
        val_path: validation batch file (None: no validation).
        image_size: the size the model is built for; checked against the file's ``Xs``.
    """

    def __init__(self, path: str, val_path: str | None = None, image_size: int | None = None) -> None:
        super().__init__()
        self.save_hyperparameters()
        self._train: TensorBatches | None = None

    def _data(self, path: str) -> TensorBatches:
        data = TensorBatches(path)
        size = data.batches[0]["source"].shape[-1]
        if self.hparams.image_size is not None and size != self.hparams.image_size:
            raise TensorBatchError(f"The batches in {path} are {size} px but the model is {self.hparams.image_size} px "
                                   f"(model.image_size); record them at the model's size.")
        return data

    def train_dataloader(self) -> DataLoader:
        if self._train is None:
            self._train = self._data(self.hparams.path)
        return DataLoader(self._train, batch_size=None, shuffle=False)

    def val_dataloader(self) -> DataLoader | list:
        if self.hparams.val_path is None:
            return []
        return DataLoader(self._data(self.hparams.val_path), batch_size=None, shuffle=False)
