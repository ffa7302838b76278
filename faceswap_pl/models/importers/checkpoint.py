"""Reading weight files safely and loading them strictly, with one clear message per failure.

Two functions serve every foreign or own checkpoint in the project:

* :func:`load_checkpoint_file` reads ``.pth`` / ``.pt`` / ``.ckpt`` (``torch.load`` with
  ``weights_only=True``, so a pickle that would run code is refused) or ``.safetensors`` onto the CPU,
  unwraps the usual containers (``{"state_dict": ...}``, ``{"model": ...}``, ...) and strips the
  ``module.`` prefix that ``DataParallel`` / DDP training leaves on every key.
* :func:`load_state_dict_strict` loads a state dict into a module and, when keys or shapes differ,
  raises :class:`~faceswap_pl.errors.CheckpointMismatchError` listing missing keys, unexpected keys
  and shape mismatches (truncated, with counts) and what to do about it.

Example:
    >>> sd = load_checkpoint_file("backbone.pth")              # doctest: +SKIP
    >>> load_state_dict_strict(net, sd, "ArcFace weights 'backbone.pth'")  # doctest: +SKIP
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from torch import nn

from faceswap_pl.errors import (
    CheckpointMismatchError,
    CheckpointNotFoundError,
    CheckpointReadError,
    UnsafeCheckpointError,
)

__all__ = [
    "CheckpointNotFoundError",
    "CheckpointReadError",
    "UnsafeCheckpointError",
    "load_checkpoint_file",
    "load_state_dict_strict",
    "read_torch_file",
    "strip_prefix",
]

# Keys under which training scripts commonly nest the weights, tried in this order.
WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net", "network", "params_ema", "params")
# How many names each list in a mismatch message shows before "... and N more".
_SHOW = 8


def _numpy_safe_globals() -> list:
    """numpy reconstruction functions that only rebuild numbers/arrays (no code of their own).

    Old training checkpoints often store metadata such as ``best_nme`` or ``epoch`` as numpy scalars;
    allowing these keeps such files loadable. Anything else an array holds still needs its own global,
    which the weights-only unpickler keeps refusing.
    """
    core = getattr(np, "_core", None) or np.core
    found = [np.ndarray, np.dtype, core.multiarray.scalar, core.multiarray._reconstruct]
    dtypes = getattr(np, "dtypes", None)
    if dtypes is not None:  # numpy >= 1.25 pickles dtypes via their DType classes
        found += [getattr(dtypes, n) for n in dir(dtypes) if n.endswith("DType")]
    return found


def read_torch_file(path: Path) -> object:
    """``torch.load`` on the CPU with ``weights_only=True`` (whatever the file holds: a state dict, a Lightning
    checkpoint dict, ...), failures turned into our errors."""
    try:
        with torch.serialization.safe_globals(_numpy_safe_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        code = _code_globals(path, str(exc))
        if code:
            raise UnsafeCheckpointError(
                f"Refused to load '{path}' for safety: it is a pickle that would import and run code "
                f"({', '.join(code)}), and weights are only loaded with torch.load(weights_only=True). "
                "Re-save the plain state dict (torch.save(model.state_dict(), path)) from a trusted "
                "environment, or convert it to .safetensors."
            ) from None
        raise CheckpointReadError(_unreadable(path, exc)) from None
    except Exception as exc:  # corrupt zip, truncated file, not a torch file at all
        raise CheckpointReadError(_unreadable(path, exc)) from None


def _code_globals(path: Path, message: str) -> list[str]:
    """Names of the importable callables a refused pickle asks for (empty if none were the cause)."""
    names = re.findall(r"GLOBAL ([\w.]+)", message)
    if not names:
        try:
            names = list(torch.serialization.get_unsafe_globals_in_checkpoint(path))
        except Exception:  # not a zip checkpoint: nothing more to learn
            names = []
    return list(dict.fromkeys(names))


def _unreadable(path: Path, exc: BaseException) -> str:
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return (
        f"Cannot read the checkpoint '{path}': the file is corrupt, truncated or not a PyTorch / "
        f"safetensors weight file ({type(exc).__name__}: {reason[:200]}). Download or copy it again "
        "and check its size or checksum."
    )


def _load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path), device="cpu")
    except Exception as exc:
        raise CheckpointReadError(_unreadable(path, exc)) from None


def _is_state_dict(obj: object) -> bool:
    return isinstance(obj, Mapping) and len(obj) > 0 and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()
    )


def _unwrap(obj: object, path: Path) -> dict[str, torch.Tensor]:
    """Descend through wrapper dicts until a ``name -> tensor`` mapping is found."""
    for _ in range(4):  # wrappers nest at most a few levels (e.g. {"model": {"state_dict": ...}})
        if _is_state_dict(obj):
            return dict(obj)
        if not isinstance(obj, Mapping):
            break
        inner = next((obj[k] for k in WRAPPER_KEYS if isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            break
        obj = inner
    if isinstance(obj, Mapping):
        found = ", ".join(map(str, list(obj)[:_SHOW])) + (" ..." if len(obj) > _SHOW else "")
        what = f"a dict with keys {found or '(none)'}"
    else:
        what = f"a {type(obj).__name__}"
    raise CheckpointReadError(
        f"The checkpoint '{path}' holds {what}, not a state dict (parameter name -> tensor) nor one "
        f"nested under {', '.join(repr(k) for k in WRAPPER_KEYS)}. Save the weights with "
        "torch.save(model.state_dict(), path)."
    )


def strip_prefix(state_dict: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """Remove ``prefix`` from every key when *all* keys carry it; otherwise return a plain copy.

    Args:
        state_dict: name -> tensor.
        prefix: e.g. ``"module."`` (DataParallel / DDP) or ``"generator."`` (a submodule's weights).
    """
    if state_dict and all(k.startswith(prefix) for k in state_dict):
        return {k[len(prefix):]: v for k, v in state_dict.items()}
    return dict(state_dict)


def load_checkpoint_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a weight file into a flat CPU state dict.

    Args:
        path: ``.safetensors`` (read with safetensors) or any other extension, read with
            ``torch.load(weights_only=True, map_location="cpu")`` (``.pth``, ``.pt``, ``.ckpt``, ...).
    Returns:
        ``{name: tensor}`` on the CPU, unwrapped from ``{"state_dict": ...}``-style containers and
        with a ``module.`` prefix (on every key) removed.
    Raises:
        CheckpointNotFoundError: no such file.
        UnsafeCheckpointError: a pickle that would import code (refused, never executed).
        CheckpointReadError: corrupt / truncated / not a weight file, or no state dict inside.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        where = "is a directory, not a file" if path.is_dir() else "does not exist"
        raise CheckpointNotFoundError(
            f"Checkpoint file '{path}' {where}; check the path (relative paths start at '{Path.cwd()}')."
        )
    if path.suffix.lower() == ".safetensors":
        state_dict: dict[str, torch.Tensor] = _load_safetensors(path)
    else:
        state_dict = _unwrap(read_torch_file(path), path)
    return strip_prefix(state_dict, "module.")


def _listing(names: list[str], label: str) -> str:
    shown = ", ".join(names[:_SHOW])
    more = f", ... and {len(names) - _SHOW} more" if len(names) > _SHOW else ""
    return f"{len(names)} {label} ({shown}{more})"


def load_state_dict_strict(module: nn.Module, state_dict: Mapping[str, torch.Tensor], what: str,
                           hint: str | None = None) -> None:
    """Load ``state_dict`` into ``module`` requiring the same keys and shapes, or explain why not.

    BatchNorm ``num_batches_tracked`` counters absent from older checkpoints are not counted as
    missing (they play no part in evaluation) and are set to 0, so a module built on the ``meta``
    device and materialised with ``to_empty`` ends up fully defined.

    Args:
        module: the network to fill (its own keys define what is expected).
        state_dict: name -> tensor, e.g. from :func:`load_checkpoint_file`.
        what: names the weights in the message, e.g. ``"ArcFace iresnet100 weights 'backbone.pth'"``.
        hint: the fix to suggest; default asks whether the file belongs to a different backbone.
    Raises:
        CheckpointMismatchError: one message with the missing keys, unexpected keys and shape
            mismatches (each list truncated with its count) and ``hint``.
    """
    expected = module.state_dict()
    given = dict(state_dict)
    for key, value in expected.items():
        if key.endswith("num_batches_tracked") and key not in given:
            given[key] = torch.zeros_like(value, device="cpu")
    missing = [k for k in expected if k not in given]
    unexpected = [k for k in given if k not in expected]
    wrong = [
        f"{k}: checkpoint {list(given[k].shape)} vs network {list(v.shape)}"
        for k, v in expected.items()
        if k in given and tuple(given[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or wrong:
        problems = [
            _listing(items, label)
            for items, label in ((missing, "missing keys"), (unexpected, "unexpected keys"),
                                 (wrong, "shape mismatches"))
            if items
        ]
        fix = hint or ("Is this a checkpoint of a different backbone or model? Pass the file made for "
                       "this architecture.")
        raise CheckpointMismatchError(f"{what} do not fit the network: {'; '.join(problems)}. {fix}")
    module.load_state_dict(given, strict=True)
