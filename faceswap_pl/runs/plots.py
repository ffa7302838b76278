"""Plots of runs: metric curves, and group means with their intervals."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from mlflow.exceptions import MlflowException

from faceswap_pl.errors import FaceSwapError
from faceswap_pl.runs.compare import GroupComparison, metric_order
from faceswap_pl.runs.store import names_list, tracking_client


def plot_groups(result: GroupComparison, out_png: str | os.PathLike) -> Path:
    """The groups' means with their 95% intervals as error bars, one panel per metric."""
    labels = [", ".join(str(v) for v in g["key"].values()) for g in result.groups]
    figure = Figure(figsize=(1.5 + 1.1 * max(3, len(labels)) * len(result.metrics), 4), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, len(result.metrics), squeeze=False)[0]
    for ax, metric in zip(axes, result.metrics):
        summaries = [g["summary"][metric] for g in result.groups]
        ax.errorbar(np.arange(len(labels)), [s["mean"] for s in summaries],
                    yerr=[s["ci95"] if np.isfinite(s["ci95"]) else 0.0 for s in summaries], fmt="o", capsize=4)
        ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
        ax.set_ylabel(metric)
        ax.grid(axis="y", alpha=0.3)
    figure.suptitle(f"mean and 95% interval per {', '.join(result.group_by)}")
    path = Path(out_png)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    return path


def plot_metric_curves(uri: str | None, run_ids: list[str], metrics: list[str], out_png: str | os.PathLike) -> Path:
    """One subplot per metric, one line per run (metric history against step); writes and returns ``out_png``."""
    if not run_ids:
        raise FaceSwapError("No runs to plot; pass at least one run id.")
    if not metrics:
        raise FaceSwapError("No metrics to plot; pass at least one metric name.")
    with tracking_client(uri) as (client, uri):
        names, histories, logged = {}, {}, set()
        for run_id in run_ids:
            try:
                run = client.get_run(run_id)
            except MlflowException:
                message = f"Run {run_id!r} is not in {uri}; take run ids from `faceswap-pl runs compare`."
                raise FaceSwapError(message) from None
            names[run_id] = run.info.run_name or run_id[:8]
            logged.update(run.data.metrics)
            for metric in metrics:
                if metric in run.data.metrics:
                    points = sorted(client.get_metric_history(run_id, metric), key=lambda m: (m.step, m.timestamp))
                    histories[run_id, metric] = ([p.step for p in points], [p.value for p in points])
    for metric in metrics:
        if metric not in logged:
            raise FaceSwapError(f"Metric {metric!r} was not logged by the runs to plot; available: "
                                f"{names_list(sorted(logged, key=metric_order))}.")

    cols = min(3, len(metrics))
    nrows = math.ceil(len(metrics) / cols)
    figure = Figure(figsize=(5.0 * cols, 3.4 * nrows + 0.6), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(nrows, cols, squeeze=False).ravel()
    if len(run_ids) <= 10:
        styles = [(f"C{i}", "-") for i in range(len(run_ids))]
    else:  # 20 colours, then dashed and dotted lines
        styles = [(colormaps["tab20"](i % 20), ("-", "--", ":")[i // 20 % 3]) for i in range(len(run_ids))]
    handles = {}
    for ax, metric in zip(axes, metrics):
        for run_id, (color, linestyle) in zip(run_ids, styles):
            if (run_id, metric) not in histories:
                continue
            steps, values = histories[run_id, metric]
            (line,) = ax.plot(steps, values, color=color, linestyle=linestyle, linewidth=1.2, label=names[run_id],
                              marker="o" if len(steps) < 20 else None, markersize=3)
            handles.setdefault(run_id, line)
        ax.set_title(metric, fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    for ax in axes[len(metrics):]:
        ax.set_visible(False)
    if handles:
        figure.legend([handles[r] for r in run_ids if r in handles], [names[r] for r in run_ids if r in handles],
                      loc="outside lower center", ncols=min(4, len(handles)), fontsize=9)
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=100)
    return out

