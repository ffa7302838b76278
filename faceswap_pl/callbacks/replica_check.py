"""Check at the end of training that every data-parallel replica holds bit-identical networks.

Data-parallel training keeps one copy of the generator and the discriminator per process and relies
on identical gradient reductions to keep them equal. A missed reduction (a network outside every DDP
wrapper, a rank-dependent branch, an unsynchronised buffer) lets the copies drift apart silently;
this callback makes that a loud error. Add it on the command line with::

    --trainer.callbacks+=faceswap_pl.callbacks.replica_check.ReplicaCheck --trainer.callbacks.path=replicas.json
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import lightning as L
import torch
import torch.distributed as dist
from torch import nn

from faceswap_pl.errors import FaceSwapError

DEFAULT_NETWORKS = ("generator", "discriminator")


class ReplicaMismatchError(FaceSwapError):
    """The data-parallel replicas of a network differ after training."""


def network_checksum(module: nn.Module) -> dict[str, object]:
    """Exact fingerprint of a module's parameters and buffers.

    Returns ``sha256`` (over every tensor's name, dtype, shape and raw bytes in state-dict order),
    ``sum`` (float64 sum of all elements, for reading, not for comparing) and ``numel``.
    """
    digest = hashlib.sha256()
    total, numel = 0.0, 0
    tensors = list(module.named_parameters()) + list(module.named_buffers())
    for name, tensor in tensors:
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}|{flat.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes())
        total += float(flat.double().sum())
        numel += flat.numel()
    return {"sha256": digest.hexdigest(), "sum": total, "numel": numel}


class ReplicaCheck(L.Callback):
    """At the end of training, compare the networks' checksums across all ranks.

    Every rank fingerprints the networks named in the module's ``ddp_submodules`` (default
    ``generator`` and ``discriminator``) with :func:`network_checksum`; the fingerprints are
    all-gathered and a :class:`ReplicaMismatchError` names each network whose replicas differ.
    Rank 0 writes a JSON report to ``path`` (if given): per-rank checksums, world size,
    ``module.iteration`` and the strategy name. The report is written before the comparison, so it
    exists for inspection when the check fails.

    Args:
        path: JSON file for the report; ``None`` writes nothing.
    """

    def __init__(self, path: str | None = None) -> None:
        self.path = path

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        names = tuple(getattr(pl_module, "ddp_submodules", ()) or DEFAULT_NETWORKS)
        local = {name: network_checksum(getattr(pl_module, name)) for name in names}
        world_size = trainer.world_size
        if world_size > 1 and dist.is_available() and dist.is_initialized():
            gathered: list = [None] * world_size
            dist.all_gather_object(gathered, local)
        else:
            gathered = [local]

        if trainer.is_global_zero and self.path is not None:
            iteration = getattr(pl_module, "iteration", None)
            report = {
                "world_size": world_size,
                "strategy": getattr(trainer.strategy, "strategy_name", type(trainer.strategy).__name__),
                "iteration": int(iteration) if iteration is not None else None,
                "checksums": {str(rank): sums for rank, sums in enumerate(gathered)},
            }
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            Path(self.path).write_text(json.dumps(report, indent=2))

        problems = []
        for name in names:
            reference = gathered[0][name]["sha256"]
            differing = [rank for rank, sums in enumerate(gathered) if sums[name]["sha256"] != reference]
            if differing:
                problems.append(f"{name} on rank(s) {differing} differs from rank 0")
        if problems:
            raise ReplicaMismatchError(
                f"Data-parallel replicas diverged after training ({'; '.join(problems)}); a gradient or buffer "
                "was not synchronised: check the strategy (use 'gan_ddp') and any rank-dependent code in the module."
            )
