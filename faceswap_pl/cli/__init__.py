"""`faceswap-pl`: the command line -- every parser and command of the project, and nothing else.

One module per command group (``models``, ``shards``, ``batches``, ``evaluate``, ``runs``, ``sweep``, ``export``,
``swap``, ``demo``, ``restoration``; ``lightning`` for ``fit`` / ``validate``). Each adds its parser and calls the
library. The command modules import the library inside their command functions, the one place in the project
where imports sit inside functions: building the parser must not import torch, Lightning and MLflow, or every
``faceswap-pl --help`` would wait for them (``benchmarks/cli_startup.py`` measures both ways).

Every :class:`~faceswap_pl.errors.FaceSwapError` is printed as one sentence with exit code 2.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import platform
import sys

from faceswap_pl.cli import batches, completion, demo, evaluate, export, models, restoration, runs, shards, swap, sweep
from faceswap_pl.errors import FaceSwapError
from faceswap_pl.version import __version__

LIGHTNING_COMMANDS = ("fit", "validate")
COMMAND_GROUPS = (evaluate, demo, models, restoration, shards, batches, runs, sweep, export, swap, completion)


def version_text() -> str:
    """``faceswap-pl X (python Y; torch Z, lightning W)``, from package metadata (nothing heavy is imported)."""
    def installed(name: str) -> str:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"
    return (f"faceswap-pl {__version__} (python {platform.python_version()}; torch {installed('torch')}, "
            f"lightning {installed('lightning')})")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="faceswap-pl",
        description="One-shot face swapping (GHOST / AEI-Net) with PyTorch Lightning.",
    )
    parser.add_argument("--version", action="version", version=version_text())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, text in (("fit", "train (LightningCLI; `faceswap-pl fit --help` for every option)"),
                       ("validate", "run validation on a checkpoint")):
        sub.add_parser(name, help=text, add_help=False)
    for group in COMMAND_GROUPS:
        group.add_parser(sub)
    parser.set_defaults(root_parser=parser)  # for `completion`, which describes the whole command line
    return parser


def main(argv: list[str] | None = None) -> int:
    explicit = argv is not None
    argv = list(argv) if explicit else sys.argv[1:]
    try:
        if argv and argv[0] in LIGHTNING_COMMANDS:
            from faceswap_pl.cli.lightning import run_lightning

            # LightningCLI reads sys.argv itself unless it is called from Python with arguments
            return run_lightning(argv if explicit else None)
        if argv[:1] == ["restoration"] and argv[1:2] and argv[1] in restoration.ACTIONS:
            return restoration.run(argv[1:])
        args = build_parser().parse_args(argv)
        return args.func(args)
    except FaceSwapError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
