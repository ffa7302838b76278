"""Data: shard schema, streaming reader, pairing, augmentation and DataModules.

``FaceSwapDataModule``, ``TensorBatchDataModule`` and ``EvalPairs`` are imported lazily, so that
``faceswap_pl.data.schema`` stays cheap to import (the shard builder uses it without Lightning).
"""

from __future__ import annotations

from typing import Any

__all__ = ["EvalPairs", "FaceSwapDataModule", "TensorBatchDataModule"]


def __getattr__(name: str) -> Any:
    if name == "FaceSwapDataModule":
        from faceswap_pl.data.datamodule import FaceSwapDataModule

        return FaceSwapDataModule
    if name == "TensorBatchDataModule":
        from faceswap_pl.data.tensor_batches import TensorBatchDataModule

        return TensorBatchDataModule
    if name == "EvalPairs":
        from faceswap_pl.data.evalpairs import EvalPairs

        return EvalPairs
    raise AttributeError(f"module 'faceswap_pl.data' has no attribute {name!r}")
