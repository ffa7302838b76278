"""The rich console every command and progress display prints to (bottom floor: imports only rich)."""

from __future__ import annotations

from rich.console import Console


def console() -> Console:
    """A console for this process's standard output; 160 columns when piped, so tables are not squeezed to 80."""
    made = Console()
    if not made.is_terminal:
        made = Console(width=160)
    return made
