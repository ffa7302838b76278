"""`faceswap-pl fit|validate` (and `faceswap-pl restoration fit|validate`): LightningCLI over a LightningModule and
any DataModule, with the project's wiring.

* ``model.image_size`` is the one image size: LightningCLI links it to the data module's ``image_size``
  (give it once, on the model; a data module whose ``image_size`` differs cannot be configured).
* ``--ckpt_path last`` resolves to the newest ``last.ckpt`` of the same job and continues its MLflow run;
  any other ``--ckpt_path`` is scanned before Lightning loads it (:mod:`faceswap_pl.training.checkpointing`).
* Checkpoints are written atomically; the resolved config is logged to MLflow (params + ``config.yaml``).

``test`` and ``predict`` are not commands: ``faceswap-pl evaluate --pairs TEST_SHARDS`` evaluates a checkpoint
on a test split, and ``faceswap-pl swap`` writes swaps.
"""

from __future__ import annotations

import sys
from pathlib import Path

import lightning as L
import yaml
from lightning.pytorch.cli import LightningCLI

import faceswap_pl.training.strategy  # noqa: F401 - registers strategy "gan_ddp"
from faceswap_pl.callbacks.config_log import LogConfigCallback
from faceswap_pl.configs import resolve_config, shipped_names
from faceswap_pl.errors import FaceSwapError
from faceswap_pl.training.checkpointing import (
    absolute_tracking_uri,
    check_checkpoint_path,
    resolve_last,
    use_atomic_checkpoints,
)
from faceswap_pl.training.module import FaceSwapModule

LIGHTNING_COMMANDS = ("fit", "validate")
RESTORATION_COMMANDS = ("fit", "validate")


class FaceSwapLightningCLI(LightningCLI):
    """LightningCLI with the image size linked, ``--ckpt_path last`` resolution and atomic checkpoint writes."""

    def add_arguments_to_parser(self, parser) -> None:
        if self.model_class is FaceSwapModule:
            parser.link_arguments("model.image_size", "data.init_args.image_size")

    def parse_arguments(self, parser, args) -> None:
        if self.model_class is FaceSwapModule:
            refuse_data_image_size(sys.argv[1:] if args is None else args)
        super().parse_arguments(parser, args)

    def _parse_ckpt_path(self) -> None:  # runs right after parsing, before Lightning reads the checkpoint
        subcommand = self.config.get("subcommand")
        if subcommand:
            config = self.config[subcommand]
            absolute_tracking_uri(config)
            if subcommand == "fit":
                message = resolve_last(config)
                if message:
                    print(message, flush=True)
            check_checkpoint_path(config)
        super()._parse_ckpt_path()

    def before_fit(self) -> None:
        use_atomic_checkpoints(self.trainer)


def refuse_data_image_size(args) -> None:
    """The linked ``data.init_args.image_size`` would be overwritten by ``model.image_size``: say so instead."""
    if not isinstance(args, list):
        return
    given = []
    for i, arg in enumerate(args):
        if arg.startswith("--data.init_args.image_size"):
            given.append("the command line")
        elif arg == "--config" and i + 1 < len(args) or arg.startswith("--config="):
            path = Path(arg.split("=", 1)[1] if "=" in arg else args[i + 1])
            try:
                config = yaml.safe_load(path.read_text()) or {}
            except (OSError, yaml.YAMLError):
                continue  # LightningCLI reports unreadable configs itself
            data = config.get("data") if isinstance(config, dict) else None
            if isinstance(data, dict) and "image_size" in (data.get("init_args") or {}):
                given.append(str(path))
    if given:
        raise FaceSwapError(f"data.init_args.image_size is set in {', '.join(given)}, but the data module takes "
                            f"model.image_size (the two are linked); remove it there and give the size once, as "
                            f"model.image_size.")


def _names_a_file(value: str) -> bool:
    """A ``--config`` value that is a path or a shipped name, not inline YAML."""
    return "\n" not in value and ": " not in value and not value.lstrip().startswith("{")


def config_paths(argv: list[str]) -> list[str]:
    """The values of ``--config PATH`` / ``--config=PATH`` that name files (not inline YAML)."""
    values = [arg.split("=", 1)[1] for arg in argv if arg.startswith("--config=")]
    values += [argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg == "--config"]
    return [value for value in values if _names_a_file(value)]


def resolve_config_args(argv: list[str]) -> list[str]:
    """``argv`` with each ``--config NAME`` of a shipped config (``ghost``, ``data/shards``) replaced by its file."""
    out = []
    for i, arg in enumerate(argv):
        if i and argv[i - 1] == "--config" and _names_a_file(arg):
            arg = resolve_config(arg)
        elif arg.startswith("--config=") and _names_a_file(arg[len("--config="):]):
            arg = "--config=" + resolve_config(arg[len("--config="):])
        out.append(arg)
    return out


def check_config_files(argv: list[str]) -> None:
    """Every ``--config`` file exists and is valid YAML, or one sentence names the file (and line) to fix."""
    for value in config_paths(argv):
        path = Path(value).expanduser()
        if not path.is_file():
            raise FaceSwapError(f"The config file '{value}' does not exist; give the path of a YAML file or the name "
                                f"of a shipped config ({', '.join(shipped_names('experiments'))}).")
        try:
            yaml.safe_load(path.read_text())
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
            problem = getattr(error, "problem", None) or str(error)
            raise FaceSwapError(f"The config file '{value}' is not valid YAML{where}: {problem}; fix it there.") from None
        except (OSError, UnicodeDecodeError) as error:
            raise FaceSwapError(f"The config file '{value}' could not be read ({error}).") from None


def run_lightning(argv: list[str] | None, model_class: type | None = None, prog: str = "faceswap-pl") -> int:
    """`faceswap-pl fit|validate ...` with ``argv`` (None: ``sys.argv``); ``model_class`` defaults to
    :class:`~faceswap_pl.training.module.FaceSwapModule` (`faceswap-pl restoration` passes RestorationModule)."""
    saved = sys.argv
    if argv is not None:  # called from Python (demo, tests): the arguments are argv, not sys.argv
        argv = resolve_config_args(argv)
        check_config_files(argv)
        sys.argv = saved[:1]
    else:  # Lightning's DDP launcher runs the other ranks with sys.argv: it carries the resolved files
        sys.argv = [saved[0], *resolve_config_args(saved[1:])]
        check_config_files(sys.argv[1:])
    try:
        FaceSwapLightningCLI(
            model_class or FaceSwapModule,
            L.LightningDataModule,
            subclass_mode_data=True,
            args=argv,
            parser_kwargs={"prog": prog, "parser_mode": "omegaconf"},
            save_config_callback=LogConfigCallback,
            save_config_kwargs={"overwrite": True},
            auto_configure_optimizers=False,
        )
    finally:
        sys.argv = saved
    return 0
