"""`faceswap-pl evaluate`: every metric of a generator on fixed pairs, as a report."""

from __future__ import annotations

import argparse
from pathlib import Path

from faceswap_pl.argtypes import number
from faceswap_pl.console import console as _console


def cmd_evaluate(args: argparse.Namespace) -> int:
    from faceswap_pl.inference.evaluate import evaluate_checkpoint

    report = evaluate_checkpoint(args.checkpoint, args.pairs, args.out, num_pairs=args.num_pairs,
                                 pairs_file=args.pairs_file, batch_size=args.batch_size, recognizer=args.recognizer,
                                 worst=args.worst, device=args.device, identity_weights=args.identity_weights,
                                 tracking_uri=args.tracking_uri)
    from rich.table import Table

    table = Table(title=f"{report['num_pairs']} pairs, {report['seconds']} s")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in report["metrics"].items():
        table.add_row(name, f"{value:.4f}")
    _console().print(table)
    print(f"report: {Path(args.out) / 'report.md'} (and report.json, worst_*.png)")
    return 0



def add_parser(sub) -> None:
    evaluate = sub.add_parser("evaluate", help="every metric of a checkpoint on fixed pairs: JSON + markdown report, "
                                               "grids of the worst swaps")
    evaluate.add_argument("--checkpoint", required=True, help="a .ckpt written by `faceswap-pl fit`, an export "
                          "folder, GHOST's released generator G_*.pth, or an MLflow URI of one: "
                          "models:/NAME@ALIAS, models:/NAME/VERSION, runs:/RUN_ID/PATH")
    evaluate.add_argument("--tracking-uri", metavar="URI", help="MLflow store for a models:/ or runs:/ URI (default "
                          "$MLFLOW_TRACKING_URI, else sqlite:///mlruns.db)")
    evaluate.add_argument("--identity-weights", metavar="PATH", help="the identity encoder's weights when users bring "
                          "them (ArcFace backbone.pth; needed for GHOST's G_*.pth)")
    evaluate.add_argument("--pairs", required=True, help="shards to take the pairs from (folder, glob, brace list)")
    evaluate.add_argument("--out", default="evaluation", help="report folder (default: ./evaluation)")
    evaluate.add_argument("--num-pairs", type=number(int, 1), default=64, help="pairs to evaluate (default 64)")
    evaluate.add_argument("--pairs-file", help="JSON of pair references: read if it exists, else written")
    evaluate.add_argument("--batch-size", type=number(int, 1), default=16)
    evaluate.add_argument("--recognizer", default="facenet", help="evaluation identity network (default facenet)")
    evaluate.add_argument("--worst", type=number(int, 0), default=8, help="worst pairs listed and shown per metric")
    evaluate.add_argument("--device", default="cpu", help="torch device, e.g. cuda:0")
    evaluate.set_defaults(func=cmd_evaluate)
