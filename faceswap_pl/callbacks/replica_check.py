"""Check at the end of training that every data-parallel replica holds bit-identical networks.

Data-parallel training keeps one copy of the generator and the discriminator per process and relies
on identical gradient reductions to keep the copies equal. A missed reduction (a network outside
every DDP wrapper, a rank-dependent branch) lets them drift apart silently; this callback turns that
into an error. Add it on the command line with::

    --trainer.callbacks+=faceswap_pl.callbacks.replica_check.ReplicaCheck --trainer.callbacks.path=replicas.json

It also fingerprints every training batch each rank receives and reports them per rank: ranks that trained
on the very same batches did no data-parallel work (a loader that is not split by rank), which it warns about.

Parameters must match exactly. Buffers are only reported by default: DDP makes rank 0's buffers
authoritative by broadcasting them at the start of a forward pass, so after the last step each rank
still holds the BatchNorm running statistics of its own last batch (rank 0's are the ones saved in
checkpoints). Pass ``check_buffers=True`` for models whose buffers are synchronised anyway.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable
from pathlib import Path

import lightning as L
import torch
import torch.distributed as dist

from faceswap_pl.errors import FaceSwapError

DEFAULT_NETWORKS = ("generator", "discriminator")
log = logging.getLogger(__name__)


class ReplicaMismatchError(FaceSwapError):
    """The data-parallel replicas of a network differ after training."""


def tensors_checksum(named_tensors: Iterable[tuple[str, torch.Tensor]]) -> dict[str, object]:
    """Exact fingerprint of named tensors, in the given order.

    Returns ``sha256`` (over each tensor's name, dtype, shape and raw bytes: equal only for
    bit-identical tensors), ``sum`` (float64 sum of all elements, for reading) and ``numel``.
    """
    digest = hashlib.sha256()
    total, numel = 0.0, 0
    for name, tensor in named_tensors:
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}|{flat.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes())
        total += float(flat.double().sum())
        numel += flat.numel()
    return {"sha256": digest.hexdigest(), "sum": total, "numel": numel}


def network_checksums(module: torch.nn.Module) -> dict[str, dict[str, object]]:
    """``{"parameters": ..., "buffers": ...}`` checksums (see :func:`tensors_checksum`) of one network."""
    return {"parameters": tensors_checksum(module.named_parameters()),
            "buffers": tensors_checksum(module.named_buffers())}


def batch_fingerprint(batch: object) -> str:
    """A short exact fingerprint of a batch's tensors (a dict, list or tuple of them, or one tensor)."""
    if isinstance(batch, dict):
        named = [(str(key), value) for key, value in sorted(batch.items()) if torch.is_tensor(value)]
    elif isinstance(batch, (list, tuple)):
        named = [(str(i), value) for i, value in enumerate(batch) if torch.is_tensor(value)]
    else:
        named = [("batch", batch)] if torch.is_tensor(batch) else []
    return tensors_checksum(named)["sha256"][:16]


def same_batches(batches: list[list[str]]) -> list[int]:
    """Ranks (after 0) whose sequence of batch fingerprints equals rank 0's."""
    return [rank for rank in range(1, len(batches)) if batches[rank] and batches[rank] == batches[0]]


def replica_mismatches(gathered: list[dict], names: Iterable[str], check_buffers: bool = False) -> list[str]:
    """Descriptions of each network (and tensor kind) whose checksum on some rank differs from rank 0's.

    ``gathered[rank][network]`` is that rank's :func:`network_checksums` of the network.
    """
    kinds = ("parameters", "buffers") if check_buffers else ("parameters",)
    problems = []
    for name in names:
        for kind in kinds:
            reference = gathered[0][name][kind]["sha256"]
            ranks = [rank for rank, sums in enumerate(gathered) if sums[name][kind]["sha256"] != reference]
            if ranks:
                problems.append(f"{name} {kind} on rank(s) {ranks} differ from rank 0")
    return problems


class ReplicaCheck(L.Callback):
    """At the end of training, compare the networks' checksums across all ranks.

    Every rank fingerprints the networks named in the module's ``ddp_submodules`` (default
    ``generator`` and ``discriminator``); the fingerprints are all-gathered and a
    :class:`ReplicaMismatchError` names each network and the ranks whose replicas differ. Rank 0
    first writes a JSON report to ``path`` (if given) with the per-rank checksums, the per-rank fingerprints
    of the training batches (``batches``), world size, ``module.iteration`` and the strategy name, so the
    report exists even when the check fails.

    Args:
        path: JSON file for the report; ``None`` writes nothing.
        check_buffers: also require bit-identical buffers (see the module docstring for why this
            is off by default).
    """

    def __init__(self, path: str | None = None, check_buffers: bool = False) -> None:
        self.path = path
        self.check_buffers = check_buffers
        self.batches: list[str] = []

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: object,
                             batch_idx: int) -> None:
        self.batches.append(batch_fingerprint(batch))

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        names = tuple(getattr(pl_module, "ddp_submodules", ()) or DEFAULT_NETWORKS)
        local = {name: network_checksums(getattr(pl_module, name)) for name in names}
        if trainer.world_size > 1 and dist.is_available() and dist.is_initialized():
            gathered: list = [None] * trainer.world_size
            dist.all_gather_object(gathered, local)
            batches: list = [None] * trainer.world_size
            dist.all_gather_object(batches, self.batches)
        else:
            gathered, batches = [local], [self.batches]
        repeated = same_batches(batches)
        if repeated and trainer.is_global_zero:
            log.warning("Rank(s) %s trained on exactly the batches of rank 0: the training data is not split by "
                        "rank (a custom loader without a DistributedSampler or rank-aware sharding?).", repeated)

        if trainer.is_global_zero and self.path is not None:
            iteration = getattr(pl_module, "iteration", None)
            report = {
                "world_size": trainer.world_size,
                "strategy": getattr(trainer.strategy, "strategy_name", type(trainer.strategy).__name__),
                "iteration": int(iteration) if iteration is not None else None,
                "checksums": {str(rank): sums for rank, sums in enumerate(gathered)},
                "batches": {str(rank): seen for rank, seen in enumerate(batches)},
            }
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            Path(self.path).write_text(json.dumps(report, indent=2))

        problems = replica_mismatches(gathered, names, self.check_buffers)
        if problems:
            raise ReplicaMismatchError(
                f"Data-parallel replicas diverged after training ({'; '.join(problems)}); something was not "
                "synchronised: check the strategy (use 'gan_ddp') and any rank-dependent code in the module."
            )
