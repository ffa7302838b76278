"""The shipped configs by name: training configs (``experiments/``) and sweep specs (``sweeps/``).

``--config ghost`` means ``experiments/ghost.yaml`` and ``--config data/shards`` ``experiments/data/shards.yaml``;
``faceswap-pl sweep run ablation_cpu`` means ``sweeps/ablation_cpu.yaml``. A path that exists always wins, so a
file of one's own is given by its path. The files are found in an installed wheel (copied into the package at
build time, see ``setup.py``) and in a checkout.
"""

from __future__ import annotations

from pathlib import Path

KINDS = ("experiments", "sweeps")
SUFFIXES = (".yaml", ".yml")


def shipped_root(kind: str) -> Path | None:
    """The folder of the shipped ``kind`` files: inside the installed package, else in the checkout."""
    here = Path(__file__).resolve().parent
    for root in (here / "_shipped" / kind, here.parent / kind):
        if root.is_dir():
            return root
    return None


def shipped_names(kind: str) -> list[str]:
    """Every shipped name of ``kind``, e.g. ``["data/shards", "demo", "ghost", ...]``."""
    root = shipped_root(kind)
    if root is None:
        return []
    return sorted(str(p.relative_to(root).with_suffix("")) for p in root.rglob("*") if p.suffix in SUFFIXES)


def resolve_config(value: str, kind: str = "experiments") -> str:
    """``value`` itself when it names an existing file, else the shipped file of that name (``ghost``,
    ``data/shards``, ``experiments/ghost.yaml`` from any folder); unchanged when there is none (the caller
    reports the missing file)."""
    if Path(value).expanduser().exists():
        return value
    name = value.replace("\\", "/")
    name = name[len(kind) + 1:] if name.startswith(f"{kind}/") else name
    for suffix in SUFFIXES:
        name = name.removesuffix(suffix)
    root = shipped_root(kind)
    if root is not None:
        for suffix in SUFFIXES:
            if (root / f"{name}{suffix}").is_file():
                return str(root / f"{name}{suffix}")
    return value
