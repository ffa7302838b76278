"""Runs side by side: ranked by a metric, or grouped by params with intervals and Welch tests."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime

from faceswap_pl.errors import FaceSwapError
from faceswap_pl.runs.store import all_runs, names_list, pick_experiment, tracking_client
from faceswap_pl.stats import describe, welch_p

# metric names whose larger values are better (identity similarity, top-k accuracy); others are errors/losses,
# and so is any name with one of LOWER_IS_BETTER in it (e.g. train/id_loss)
HIGHER_IS_BETTER = ("id_", "cos", "top", "select")
# the evaluation callback's checkpoint ranking score (faceswap_pl.callbacks.evaluation): the default sort when logged
SELECTION_METRIC = "eval/select"
LOWER_IS_BETTER = ("loss", "err", "dist")
# counters and controller state, not measures of quality: left out of the default metric columns
BOOKKEEPING_METRICS = ("epoch", "step", "train/iteration", "train/nonfinite_total", "train/d_skipped",
                       "train/adv_running_mean", "train/corrupt_frames")
COMPARE_COLUMNS = ("run", "id")
INFO_COLUMNS = ("status", "started", "duration")

def default_ascending(metric: str) -> bool:
    """Sort direction for a metric: descending for similarities and accuracies, ascending for errors and losses."""
    name = metric.lower()
    if any(token in name for token in LOWER_IS_BETTER):
        return True
    return not any(token in name for token in HIGHER_IS_BETTER)


def metric_order(metric: str) -> tuple:
    """eval/ first, then val/ and test/, other names, train/, bookkeeping; similarities before losses in each."""
    if metric == SELECTION_METRIC:
        group = -1
    elif metric in BOOKKEEPING_METRICS:
        group = 5
    elif metric.startswith("eval/"):
        group = 0
    elif metric.startswith(("val/", "test/")):
        group = 1
    elif metric.startswith("train/"):
        group = 3
    else:
        group = 2
    return group, default_ascending(metric), metric


def metric_value(metrics: dict, name: str) -> float | None:
    value = metrics.get(name)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value


def run_duration(info) -> str:
    if not info.end_time or not info.start_time:
        return "running" if info.status == "RUNNING" else "-"
    seconds = max(0, round((info.end_time - info.start_time) / 1000))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"


def run_started(info) -> str:
    if not info.start_time:
        return "-"
    return datetime.fromtimestamp(info.start_time / 1000).strftime("%m-%d %H:%M")


@dataclass
class RunComparison:
    """The result of :func:`compare_runs`; unpacks as ``columns, rows``.

    Columns: ``run`` (name), ``id`` (run id), the metrics (last values, ``None`` where a run did not
    log it), the params (``None`` where missing), ``status``, ``started``, ``duration``.
    """

    columns: list[str]
    rows: list[list]
    title: str
    experiment: str
    tracking_uri: str
    metrics: list[str]
    params: list[str]
    sort: str
    ascending: bool
    run_ids: list[str] = field(default_factory=list)
    total_runs: int = 0

    def __iter__(self):
        return iter((self.columns, self.rows))


def compare_runs(uri: str | None = None, experiment: str | None = None, metrics: list[str] | None = None,
                 sort: str | None = None, ascending: bool | None = None, params: list[str] | None = None,
                 limit: int | None = None) -> RunComparison:
    """The runs of an experiment side by side, best first.

    Args:
        uri: tracking URI (see :func:`resolve_tracking_uri`).
        experiment: experiment name or id; default the most recently created non-default experiment with runs.
        metrics: metric columns (last logged value); default every metric logged except counters such as
            ``epoch`` (:data:`BOOKKEEPING_METRICS`): ``eval/select`` (the checkpoint selection score) first,
            then ``eval/``, ``val/``/``test/``, others, ``train/``; similarities/accuracies before
            errors/losses within each group.
        sort: metric to rank by; default the first metric column. It is added as a column if missing.
        ascending: sort direction; default descending for names containing ``id_``, ``cos``, ``top`` or
            ``select`` (unless they also contain ``loss``, ``err`` or ``dist``), ascending otherwise (errors,
            losses). Runs without the metric (or with NaN) come last either way.
        params: param columns; default the ``model.*`` params (every param when none is prefixed) whose
            values differ between the listed runs.
        limit: show at most this many runs (after sorting).
    """
    if limit is not None and limit < 1:
        raise FaceSwapError(f"--limit {limit} shows no runs; pass a positive number.")
    with tracking_client(uri) as (client, uri):
        chosen, note = pick_experiment(client, uri, experiment)
        runs = all_runs(client, chosen.experiment_id)
    logged = sorted({key for run in runs for key in run.data.metrics}, key=metric_order)
    all_params = sorted({key for run in runs for key in run.data.params})

    def check_metric(name: str, option: str) -> None:
        if name not in logged:
            raise FaceSwapError(f"Metric {name!r} ({option}) was not logged by any run of {chosen.name!r}; "
                                f"available: {names_list(logged)}.")

    if metrics:
        for name in metrics:
            check_metric(name, "--metric")
        metric_columns = list(dict.fromkeys(metrics))
    else:
        metric_columns = [m for m in logged if m not in BOOKKEEPING_METRICS] or list(logged)
    if sort is not None:
        check_metric(sort, "--sort")
        if sort not in metric_columns:
            metric_columns.append(sort)
    elif metric_columns:
        sort = metric_columns[0]
    if sort is None:
        raise FaceSwapError(f"No run of {chosen.name!r} logged a metric, so there is nothing to rank; "
                            f"let a training log metrics first.")
    if ascending is None:
        ascending = default_ascending(sort)

    # newest first, then a stable sort by the metric keeps ties in that order; missing values go last
    present = [r for r in runs if metric_value(r.data.metrics, sort) is not None]
    missing = [r for r in runs if metric_value(r.data.metrics, sort) is None]
    present.sort(key=lambda r: r.data.metrics[sort], reverse=not ascending)
    total = len(runs)
    runs = (present + missing)[:limit] if limit else present + missing

    if params:
        unknown = [p for p in params if p not in all_params]
        if unknown:
            raise FaceSwapError(f"Param {unknown[0]!r} (--param) was not logged by any run of {chosen.name!r}; "
                                f"available: {names_list(all_params)}.")
        param_columns = list(dict.fromkeys(params))
    else:
        candidates = [p for p in all_params if p.startswith("model.")]
        if not candidates:  # Lightning's MLFlowLogger logs the hyperparameters without a prefix
            candidates = [p for p in all_params if not p.startswith("_")]
        param_columns = [p for p in candidates if len({r.data.params.get(p) for r in runs}) > 1]

    columns = [*COMPARE_COLUMNS, *metric_columns, *param_columns, *INFO_COLUMNS]
    rows = []
    for run in runs:
        info = run.info
        rows.append([info.run_name or info.run_id[:8], info.run_id,
                     *[metric_value(run.data.metrics, m) for m in metric_columns],
                     *[run.data.params.get(p) for p in param_columns],
                     info.status.lower(), run_started(info), run_duration(info)])
    direction = "ascending" if ascending else "descending"
    shown = f"{len(rows)} of {total} runs" if len(rows) < total else f"{total} run{'s' if total > 1 else ''}"
    title = f"Experiment {chosen.name!r}: {shown} by {sort} ({direction})"
    if note:
        title += f" - {note}"
    return RunComparison(columns=columns, rows=rows, title=title, experiment=chosen.name, tracking_uri=uri,
                         metrics=metric_columns, params=param_columns, sort=sort, ascending=ascending,
                         run_ids=[run.info.run_id for run in runs], total_runs=total)


@dataclass
class GroupComparison:
    """Runs grouped by params: per group the number of runs and each metric's figures
    (:func:`faceswap_pl.stats.describe`), best group first, and Welch's p against the best group."""

    group_by: list[str]
    metrics: list[str]
    groups: list[dict]  # {"key": {param: value}, "runs": n, "summary": {metric: figures}, "p": {metric: p}}
    title: str
    tracking_uri: str
    sort: str
    ascending: bool


def group_runs(uri: str | None = None, experiment: str | None = None, group_by: list[str] | None = None,
               metrics: list[str] | None = None, sort: str | None = None,
               ascending: bool | None = None) -> GroupComparison:
    """Group an experiment's runs by the values of ``group_by`` params (e.g. the seeds of each configuration).

    Only runs that logged the sort metric count (a sweep's per-configuration runs hold ``mean/...`` figures,
    its seed runs the ``eval/*`` values). Each group gives the mean and 95% interval of every metric over its
    runs; ``p`` is Welch's t-test against the best group (sorted by ``sort``).
    """
    comparison = compare_runs(uri, experiment=experiment, metrics=metrics, sort=sort, ascending=ascending,
                              params=group_by, limit=None)
    sort_index = comparison.columns.index(comparison.sort)
    param_index = [comparison.columns.index(p) for p in group_by]
    buckets: dict[tuple, list[list]] = {}
    for row in comparison.rows:
        if row[sort_index] is None:
            continue
        buckets.setdefault(tuple(row[i] for i in param_index), []).append(row)
    groups = []
    for key, rows in buckets.items():
        values = {m: [r[comparison.columns.index(m)] for r in rows if r[comparison.columns.index(m)] is not None]
                  for m in comparison.metrics}
        groups.append({"key": dict(zip(group_by, key)), "runs": len(rows), "values": values,
                       "summary": {m: describe(v) for m, v in values.items()}})
    sign = 1.0 if comparison.ascending else -1.0
    groups.sort(key=lambda g: sign * g["summary"][comparison.sort]["mean"])
    for group in groups:
        group["p"] = {m: welch_p(group["values"][m], groups[0]["values"][m]) if group is not groups[0] else None
                      for m in comparison.metrics}
    title = (f"Experiment {comparison.experiment!r}: {len(groups)} groups by {', '.join(group_by)} "
             f"({sum(g['runs'] for g in groups)} runs), by mean {comparison.sort}")
    return GroupComparison(group_by=list(group_by), metrics=comparison.metrics, groups=groups, title=title,
                           tracking_uri=comparison.tracking_uri, sort=comparison.sort, ascending=comparison.ascending)

