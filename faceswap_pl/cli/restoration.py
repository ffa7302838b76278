"""`faceswap-pl restoration fit|validate`: train the face restoration block (LightningCLI over RestorationModule)."""

from __future__ import annotations

ACTIONS = ("fit", "validate")


def add_parser(sub) -> None:
    """The `restoration` entry of the command list (its actions are parsed by LightningCLI, see :func:`run`)."""
    restoration = sub.add_parser("restoration", help="train the face restoration block (LightningCLI over "
                                                     "RestorationModule; `faceswap-pl restoration fit --help`)")
    actions = restoration.add_subparsers(dest="restoration_command", metavar="ACTION")
    actions.required = True
    for name, text in zip(ACTIONS, ("train FaceRestorer to undo blur, downscaling, noise and JPEG blocks",
                                    "val/psnr of a restoration checkpoint (--ckpt_path)")):
        actions.add_parser(name, help=text, add_help=False)


def run(argv: list[str]) -> int:
    """`faceswap-pl restoration fit|validate ARGS` (``argv`` starts with the action)."""
    from faceswap_pl.cli.lightning import run_lightning
    from faceswap_pl.training.restoration import RestorationModule

    return run_lightning(argv, model_class=RestorationModule, prog="faceswap-pl restoration")
