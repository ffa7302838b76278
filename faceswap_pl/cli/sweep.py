"""`faceswap-pl sweep run|report`: Optuna studies whose trials are MLflow child runs."""

from __future__ import annotations

import argparse

from faceswap_pl.argtypes import number
from faceswap_pl.console import console as _console


def cmd_sweep_run(args: argparse.Namespace) -> int:
    from faceswap_pl.sweep.launcher import run_sweep

    return run_sweep(args.spec, gpus=args.gpus, workers=args.workers, accelerator=args.accelerator,
                     storage=args.storage, resume=args.resume, join=args.join, tracking_uri=args.tracking_uri,
                     out=args.out, console=_console())


def cmd_sweep_report(args: argparse.Namespace) -> int:
    from faceswap_pl.sweep.launcher import report_command

    return report_command(args.target, storage=args.storage, out=args.out, console=_console())


def add_parser(sub) -> None:
    """`faceswap-pl sweep run|report`."""
    sweep = sub.add_parser("sweep", help="hyper-parameter sweeps: Optuna trials as MLflow child runs")
    sweep_sub = sweep.add_subparsers(dest="sweep_command", metavar="ACTION")
    sweep_sub.required = True
    run = sweep_sub.add_parser(
        "run", help="run a sweep spec with parallel workers, then print the report",
        description="Create the Optuna study, the MLflow experiment and a parent run, start one worker per GPU "
                    "(or N CPU workers) and train every trial as an MLflow child run. Example: "
                    "faceswap-pl sweep run sweeps/tiny_cpu.yaml --workers 2 --accelerator cpu")
    run.add_argument("spec", metavar="SPEC", help="sweep spec YAML (e.g. sweeps/ablation.yaml)")
    devices = run.add_argument_group("workers")
    devices.add_argument("--gpus", metavar="IDS", help="one worker per GPU, e.g. 0,1 (sets CUDA_VISIBLE_DEVICES)")
    devices.add_argument("--workers", type=number(int, 1), metavar="N", help="number of workers without --gpus "
                         "(default 1)")
    devices.add_argument("--accelerator", choices=("cpu", "gpu", "auto"), help="trainer accelerator of --workers "
                         "(default cpu)")
    run.add_argument("--storage", metavar="URL", help="Optuna storage: a journal file path (default "
                     "<out>/<name>.journal, one host) or an RDB URL such as postgresql://... or sqlite:///sweep.db "
                     "(several hosts)")
    mode = run.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true", help="continue an existing study (its parent run too)")
    mode.add_argument("--join", action="store_true", help="add workers to a study another launcher runs "
                      "(e.g. on a second host with the same RDB --storage)")
    run.add_argument("--tracking-uri", metavar="URI", help="MLflow store for a new sweep (default: "
                     "$MLFLOW_TRACKING_URI, else sqlite:///mlruns.db)")
    run.add_argument("--out", metavar="DIR", help="sweep folder: journal, logs, trials, report (default "
                     "outputs/sweeps/<name>)")
    run.set_defaults(func=cmd_sweep_run)
    report = sweep_sub.add_parser("report", help="ranked trial table and plots of a sweep",
                                  description="Write report.md and PNG plots for a sweep and log them to its "
                                              "MLflow parent run.")
    report.add_argument("target", metavar="STUDY_OR_SPEC", help="study name or its spec YAML")
    report.add_argument("--storage", metavar="URL", help="Optuna storage (default <out>/<name>.journal)")
    report.add_argument("--out", metavar="DIR", help="sweep folder (default outputs/sweeps/<name>)")
    report.set_defaults(func=cmd_sweep_report)

