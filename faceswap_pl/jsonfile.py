"""Reading the small JSON files the framework writes (configs, manifests) with one clear error."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def read_json(path: str | Path, error: type[Exception], fix: str) -> Any:
    """The parsed content of ``path``; ``error("<path> is not readable JSON (<reason>); <fix>.")`` otherwise."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as reason:
        raise error(f"{path} is not readable JSON ({reason}); {fix}.") from None
