"""Recomputation (activation checkpointing) that gives the same values, gradients and BatchNorm statistics.

``torch.utils.checkpoint`` stores a function's inputs and runs it again in the backward pass. Run again in
training mode, a BatchNorm layer would update its running statistics a second time; :func:`recomputed`
puts them back after the rerun, so a recomputed network ends the step exactly as a stored one does.
"""

from __future__ import annotations

from contextlib import contextmanager, nullcontext
from typing import Callable, Iterator

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint


def _training_batchnorms(module: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in module.modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training and m.track_running_stats]


@contextmanager
def _statistics_kept(layers: list[nn.modules.batchnorm._BatchNorm]) -> Iterator[None]:
    buffers = [b for m in layers for b in (m.running_mean, m.running_var, m.num_batches_tracked) if b is not None]
    saved = [b.clone() for b in buffers]
    try:
        yield
    finally:
        with torch.no_grad():
            for buffer, value in zip(buffers, saved):
                buffer.copy_(value)


def recomputed(module: nn.Module, function: Callable, *inputs: torch.Tensor):
    """``function(*inputs)`` (which runs ``module``) storing only ``inputs`` for the backward pass, where it is
    run again. Without gradients it simply runs. Random numbers (dropout) replay as drawn the first time."""
    if not torch.is_grad_enabled():
        return function(*inputs)
    layers = _training_batchnorms(module)
    kwargs = {"context_fn": lambda: (nullcontext(), _statistics_kept(layers))} if layers else {}
    return checkpoint(function, *inputs, use_reentrant=False, preserve_rng_state=True, **kwargs)
