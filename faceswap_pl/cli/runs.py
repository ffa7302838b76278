"""`faceswap-pl runs compare|list-experiments`: MLflow runs side by side, grouped, and their curves."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from rich.measure import Measurement
from rich.table import Table

from faceswap_pl.argtypes import number
from faceswap_pl.console import console as _console
from faceswap_pl.runs import ACCEPTED_URIS, DEFAULT_TRACKING_URI
from faceswap_pl.stats import interval


def _format(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    text = str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _print_groups(args: argparse.Namespace, console) -> int:
    from faceswap_pl.runs.compare import group_runs
    from faceswap_pl.runs.plots import plot_groups

    result = group_runs(args.tracking_uri, experiment=args.experiment, group_by=args.group_by, metrics=args.metric,
                        sort=args.sort, ascending=args.ascending)
    table = Table(title=result.title)
    for column in [*result.group_by, "runs", *result.metrics, f"vs best: {result.sort}"]:
        table.add_column(column.replace("/", "/\n"), justify="right" if column not in result.group_by else "left")
    for group in result.groups:
        p = group["p"][result.sort]
        verdict = "best" if p is None else ("no test (1 run)" if not math.isfinite(p) else
                                            f"{'differs' if p < 0.05 else 'n.s.'} (p={p:.2g})")
        table.add_row(*[str(v) for v in group["key"].values()], str(group["runs"]),
                      *[interval(group["summary"][m]) for m in result.metrics], verdict)
    console.print(table)
    console.print("mean ± half-width of the 95% interval (Student's t) over each group's runs; vs best: Welch's "
                  "t-test against the first group")
    if not args.no_plot:
        path = plot_groups(result, Path(args.plot).with_name(Path(args.plot).stem + "_groups.png"))
        console.print(f"groups plot: {path.resolve()}")
    console.print(f"tracking store: {result.tracking_uri}")
    return 0


def cmd_runs_compare(args: argparse.Namespace) -> int:
    from faceswap_pl.runs.compare import compare_runs
    from faceswap_pl.runs.plots import plot_metric_curves
    from faceswap_pl.runs.store import mlflow_ui_command

    if args.group_by:
        return _print_groups(args, _console())
    result = compare_runs(args.tracking_uri, experiment=args.experiment, metrics=args.metric, sort=args.sort,
                          ascending=args.ascending, params=args.param, limit=args.limit)
    table = Table(title=result.title)
    for column in result.columns:
        if column == result.sort:
            arrow = "↑" if result.ascending else "↓"
            table.add_column(f"{column.replace('/', '/' + chr(10))} {arrow}", justify="right", style="bold",
                             overflow="fold")
        elif column in result.metrics:
            table.add_column(column.replace("/", "/\n"), justify="right", overflow="fold")
        elif column == "id":
            table.add_column(column, no_wrap=True)
        elif column == "run":
            table.add_column(column, overflow="fold", min_width=min(24, max(len(str(r[0])) for r in result.rows)))
        else:
            table.add_column(column.replace(".", ".\n") if column in result.params else column, overflow="fold")
    id_index = result.columns.index("id")
    for row in result.rows:
        cells = [_format(v) for v in row]
        cells[id_index] = row[id_index][:8]
        table.add_row(*cells)
    console = _console()
    measured = Measurement.get(console, console.options.update_width(100_000), table)
    needed = measured.minimum
    if needed > console.width and not console.is_terminal:
        console.width = measured.maximum  # piped output: a wide table beats a cropped one
    console.print(table)
    if needed > console.width:
        console.print(f"The table is cropped to {console.width} columns; choose the columns with --metric and "
                      f"--param.")
    console.print(f"tracking store: {result.tracking_uri}")
    if not args.no_plot:
        path = plot_metric_curves(result.tracking_uri, result.run_ids, result.metrics, args.plot)
        console.print(f"metric curves: {path.resolve()}")
    console.print(f"browse: {mlflow_ui_command(result.tracking_uri)}")
    return 0


def cmd_runs_list_experiments(args: argparse.Namespace) -> int:
    from faceswap_pl.runs.store import list_experiments, resolve_tracking_uri

    uri = resolve_tracking_uri(args.tracking_uri)
    rows = list_experiments(uri)
    table = Table(title=f"MLflow experiments in {uri}")
    table.add_column("name")
    table.add_column("id", justify="right")
    table.add_column("runs", justify="right")
    for name, experiment_id, count in rows:
        table.add_row(name, experiment_id, str(count))
    _console().print(table)
    return 0


def add_parser(sub) -> None:
    """`faceswap-pl runs compare|list-experiments`."""
    uri_help = (f"MLflow store: {ACCEPTED_URIS} (default: $MLFLOW_TRACKING_URI, else {DEFAULT_TRACKING_URI} "
                f"in the current folder)")
    runs = sub.add_parser("runs", help="compare MLflow training runs: ranked table and metric curves")
    runs_sub = runs.add_subparsers(dest="runs_command", metavar="ACTION")
    runs_sub.required = True
    compare = runs_sub.add_parser(
        "compare", help="table of an experiment's runs ranked by a metric, with the params that differ",
        description="Rank the runs of an MLflow experiment by a metric's last value, show the model params that "
                    "differ between them, and plot the metric curves.")
    compare.add_argument("--experiment", metavar="NAME",
                         help="experiment name or id (default: the newest non-default experiment with runs)")
    compare.add_argument("--metric", action="append", metavar="M",
                         help="metric column, repeatable (default: every logged metric but counters such as "
                              "epoch; eval/ first)")
    compare.add_argument("--param", action="append", metavar="P",
                         help="param column, repeatable (default: the model params that differ between the runs)")
    compare.add_argument("--sort", metavar="M",
                         help="metric to rank by (default: the first metric column; eval/select comes first when "
                              "logged)")
    direction = compare.add_mutually_exclusive_group()
    direction.add_argument("--ascending", dest="ascending", action="store_const", const=True, default=None,
                           help="smallest first (default for losses and errors)")
    direction.add_argument("--descending", dest="ascending", action="store_const", const=False,
                           help="largest first (default for similarities and accuracies: names with id_, cos, "
                                "top or select)")
    compare.add_argument("--group-by", action="append", metavar="P",
                         help="group the runs by this param (repeatable), e.g. model.backbone: per group the number of "
                              "runs, the mean and 95%% interval of each metric, and Welch's test against the best group")
    compare.add_argument("--tracking-uri", metavar="URI", help=uri_help)
    compare.add_argument("--plot", default="runs_compare.png", metavar="PNG",
                         help="metric curves image to write (default runs_compare.png)")
    compare.add_argument("--no-plot", action="store_true", help="do not write the metric curves image")
    compare.add_argument("--limit", type=number(int, 1, problem="shows no runs; pass 1 or more"), default=20,
                         metavar="N",
                         help="show the best N runs (default 20)")
    compare.set_defaults(func=cmd_runs_compare)
    listing = runs_sub.add_parser("list-experiments", help="the experiments of a store and their numbers of runs")
    listing.add_argument("--tracking-uri", metavar="URI", help=uri_help)
    listing.set_defaults(func=cmd_runs_list_experiments)

