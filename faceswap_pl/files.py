"""Files the framework reads and writes: checksums, JSON, and writes that never leave half a file.

Bottom floor: used by the zoo, the data layer, the shard builder, training checkpoints and exports.

Example:
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "a.json"
    >>> with atomic_path(path) as partial:
    ...     _ = partial.write_text('{"a": 1}')
    >>> read_json(path, ValueError, "write it again")
    {'a': 1}
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

from faceswap_pl.errors import FaceSwapError


def sha256_of(path: str | Path, chunk: int = 1 << 20) -> str:
    """The hex sha256 of a file, read in ``chunk``-byte blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def read_json(path: str | Path, error: type[Exception], fix: str) -> Any:
    """The parsed content of ``path``; ``error("<path> is not readable JSON (<reason>); <fix>.")`` otherwise."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as reason:
        raise error(f"{path} is not readable JSON ({reason}); {fix}.") from None


@contextmanager
def atomic_path(path: str | Path, error: type[Exception] = FaceSwapError) -> Iterator[Path]:
    """Yield a temporary path next to ``path`` (same folder, same suffix); it becomes ``path`` by a rename
    only when the block completes, so an interrupted write leaves the old file (or none), never half of one.

    ``error`` is raised, with the fix, when the folder is missing or not writable.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise error(f"The output folder {path.parent} does not exist; create it or choose another output.")
    if not os.access(path.parent, os.W_OK):
        raise error(f"The output folder {path.parent} is not writable; choose another output.")
    partial = path.with_name(f".{path.stem}.partial{path.suffix}")  # one fixed name: a killed write's leftover goes
    try:
        yield partial
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def atomic_write(path: str | Path, write: Callable[[BinaryIO], Any]) -> None:
    """``write(handle)`` into a temporary file next to ``path``, flushed to disk, then renamed to ``path``
    (the folder is created); e.g. ``atomic_write(path, functools.partial(torch.save, checkpoint))``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as partial:
        with open(partial, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
