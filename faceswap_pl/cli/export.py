"""`faceswap-pl export`: a checkpoint's swap generator as safetensors + JSON, verified ONNX and a model card."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from faceswap_pl.argtypes import number
from faceswap_pl.console import console as _console
from faceswap_pl.inference.export_format import (
    CARD_FILE,
    CHAMPION_ALIAS,
    CONFIG_FILE,
    DEFAULT_OPSET,
    DEFAULT_TOLERANCE,
    ONNX_FILE,
    WEIGHTS_FILE,
)


def cmd_export(args: argparse.Namespace) -> int:
    from rich.table import Table

    from faceswap_pl.export import export_generator, register_export
    from faceswap_pl.runs.store import find_run_checkpoint


    console = _console()
    started = time.perf_counter()
    run_id, tracking_uri = args.run, args.tracking_uri
    if args.best:
        from faceswap_pl.sweep.launcher import best_trial_run

        run_id, study_uri, trial = best_trial_run(args.best, storage=args.storage, out=args.sweep_out)
        tracking_uri = tracking_uri or study_uri
        console.print(f"sweep {args.best}: best trial {trial.number} (objective {trial.values[0]:.4g}, {trial.params}), "
                      f"MLflow run {run_id}")
    checkpoint = Path(args.checkpoint) if args.checkpoint else find_run_checkpoint(run_id, tracking_uri)
    if run_id:
        console.print(f"run {run_id}: checkpoint {checkpoint}")
    info = export_generator(checkpoint, args.out, opset=args.opset, onnx=not args.no_onnx, tolerance=args.tolerance,
                            run_id=run_id, tracking_uri=tracking_uri)
    table = Table(title=f"Exported generator -> {info['out_dir']}")
    for column in ("file", "MB", "sha256"):
        table.add_column(column, justify="right" if column == "MB" else "left")
    for name, item in info["files"].items():
        table.add_row(name, f"{item['bytes'] / 1e6:.2f}", item["sha256"])
    table.add_row(CARD_FILE, f"{(Path(info['out_dir']) / CARD_FILE).stat().st_size / 1e6:.2f}", "")
    console.print(table)
    c = info["config"]
    console.print(f"generator: {c['backbone']}, {c['num_aad_blocks']} AAD blocks, {c['image_size']} px, width "
                  f"{c['width']}, id_dim {c['id_dim']} ({c['identity_encoder']} embeddings)"
                  f"{', EMA weights' if c['ema'] else ''}")
    if info["onnx"]:
        diffs = ", ".join(f"batch {n}: {d:.3g}" for n, d in info["onnx"]["max_abs_diff"].items())
        console.print(f"ONNX (opset {info['onnx']['opset']}) vs torch, max abs difference: {diffs} "
                      f"(tolerance {info['onnx']['tolerance']:g})")
    if args.register:
        reg = register_export(info["out_dir"], args.register, run_id=run_id, tracking_uri=tracking_uri)
        console.print(f"registered {reg['name']} version {reg['version']} (alias {CHAMPION_ALIAS}) from run "
                      f"{reg['run_id']} in {reg['tracking_uri']}")
    console.print(f"done in {time.perf_counter() - started:.1f} s; model card: {Path(info['out_dir']) / CARD_FILE}")
    return 0


def add_parser(sub) -> None:
    """`faceswap-pl export`."""
    export = sub.add_parser(
        "export", help="export a checkpoint's swap generator: safetensors + JSON, verified ONNX, model card",
        description="Write the swap generator of a training checkpoint (the EMA copy when kept) as "
                    f"{WEIGHTS_FILE} + {CONFIG_FILE}, {ONNX_FILE} (checked with onnxruntime against torch) and "
                    f"{CARD_FILE}; optionally register it in the MLflow model registry.")
    source = export.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", metavar="PATH", help="a .ckpt written by `faceswap-pl fit`")
    source.add_argument("--run", metavar="RUN_ID", help="MLflow run id: its best-*.ckpt, else last.ckpt")
    source.add_argument("--best", metavar="STUDY", help="the best completed trial of a sweep (study name or spec "
                        "YAML): its MLflow run's checkpoint, tracked in the sweep's MLflow store")
    export.add_argument("--storage", metavar="URL", help="Optuna storage of --best (default "
                        "outputs/sweeps/<name>/<name>.journal)")
    export.add_argument("--sweep-out", metavar="DIR", help="sweep folder of --best (default outputs/sweeps/<name>)")
    export.add_argument("--tracking-uri", metavar="URI",
                        help="MLflow store of --run / --register (default: $MLFLOW_TRACKING_URI, else "
                             "sqlite:///mlruns.db in the current folder)")
    export.add_argument("--out", required=True, metavar="DIR", help="export folder (created)")
    export.add_argument("--opset", type=number(int, 9, 20, problem=f"is outside 9..20 (default {DEFAULT_OPSET})"),
                        default=DEFAULT_OPSET, metavar="N",
                        help=f"ONNX opset (default {DEFAULT_OPSET})")
    export.add_argument("--no-onnx", action="store_true", help="write only safetensors, JSON and the model card")
    export.add_argument("--register", metavar="NAME",
                        help=f"log the folder to the MLflow run (or a new one) and register it as model NAME with "
                             f"alias {CHAMPION_ALIAS}")
    export.add_argument("--tolerance", default=DEFAULT_TOLERANCE, metavar="T",
                        type=number(float, above=0, problem=f"must be positive (default {DEFAULT_TOLERANCE:g})"),
                        help=f"largest ONNX vs torch max abs difference accepted (default {DEFAULT_TOLERANCE:g})")
    export.set_defaults(func=cmd_export)

