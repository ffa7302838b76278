"""MLflow runs: tracking URIs, run comparison tables and metric curves (`faceswap-pl runs ...`).

``mlflow`` (and matplotlib) are imported inside the functions so that importing this module, and
with it `faceswap-pl --help`, stays fast.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shlex
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator

from faceswap_pl.argtypes import number
from faceswap_pl.errors import FaceSwapError

DEFAULT_TRACKING_URI = "sqlite:///mlruns.db"
PARAM_VALUE_LIMIT = 6000  # mlflow.utils.validation.MAX_PARAM_VAL_LENGTH
HTTP_TIMEOUT_S = 5  # per request, for `runs` queries against a server
HTTP_MAX_RETRIES = 0
ACCEPTED_URIS = "sqlite:///PATH.db, http(s)://HOST:PORT, file:///DIR or a plain directory path"
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


# ---------------------------------------------------------------- tracking URIs

def resolve_tracking_uri(uri: str | None = None) -> str:
    """The tracking URI to use, with relative local paths made absolute against the current folder.

    ``None`` (or ``""``) means ``$MLFLOW_TRACKING_URI``, else :data:`DEFAULT_TRACKING_URI`. Accepted:
    ``sqlite:///PATH``, ``http(s)://...``, ``file:...`` and plain paths (a file store folder).
    """
    if not uri:
        uri = os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI
    uri = uri.strip()
    match = re.match(r"([A-Za-z][A-Za-z0-9+.-]*):", uri)
    scheme = match.group(1).lower() if match else ""
    if not scheme or len(scheme) == 1:  # a plain path (a Windows drive letter is not a scheme)
        return Path(uri).expanduser().resolve().as_uri()
    if scheme == "sqlite":
        if not uri.startswith("sqlite:///") or uri[len("sqlite:///"):].split("?")[0] in ("", ":memory:"):
            raise FaceSwapError(f"Tracking URI {uri!r} names no database file; use sqlite:///PATH.db "
                                f"(relative to the current folder) or sqlite:////ABSOLUTE/PATH.db.")
        path, sep, query = uri[len("sqlite:///"):].partition("?")
        path = Path(path).expanduser()
        if not path.is_absolute():
            path = Path.cwd() / path
        return f"sqlite:///{path.resolve()}{sep}{query}"
    if scheme in ("http", "https"):
        if not re.match(r"https?://[^/]", uri, re.IGNORECASE):
            raise FaceSwapError(f"Tracking URI {uri!r} has no host; use e.g. http://127.0.0.1:5000.")
        return uri.rstrip("/")
    if scheme == "file":
        rest = uri[len("file:"):]
        if rest.startswith("//"):  # file:///abs/dir or file://localhost/abs/dir
            return uri
        return Path(rest).expanduser().resolve().as_uri()
    raise FaceSwapError(f"Tracking URI {uri!r} is not supported; use {ACCEPTED_URIS}.")


def _is_http(uri: str) -> bool:
    return uri.lower().startswith(("http://", "https://"))


def mlflow_ui_command(uri: str | None = None) -> str:
    """How to browse the runs: the `mlflow ui` command line for a local store, a sentence for a server."""
    uri = resolve_tracking_uri(uri)
    if _is_http(uri):
        return f"open {uri} in a browser (the MLflow server's UI)"
    command = f"mlflow ui --backend-store-uri {shlex.quote(uri)} --host 127.0.0.1 --port 5000"
    if uri.startswith("file:"):  # MLflow 3 opens a file store only when asked to
        command = f"MLFLOW_ALLOW_FILE_STORE=true {command}"
    return command


# ---------------------------------------------------------------- params

def flatten_params(config: dict, prefix: str = "") -> dict[str, str]:
    """A nested config as MLflow params: dotted keys, lists as JSON, values cut to MLflow's 6000 characters."""
    flat: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict) and value:
            flat.update(flatten_params(value, name))
            continue
        if isinstance(value, (list, tuple, dict)):
            text = json.dumps(value, default=str)
        else:
            text = str(value)
        if len(text) > PARAM_VALUE_LIMIT:
            text = text[:PARAM_VALUE_LIMIT - 3] + "..."
        flat[name] = text
    return flat


# ---------------------------------------------------------------- store access

@contextmanager
def _tracking_client(uri: str | None) -> Iterator[tuple[Any, str]]:
    """``(MlflowClient, resolved uri)``; a missing store or an unreachable server becomes a FaceSwapError.

    Against a server, each request gets a short timeout and no retries unless the user set
    ``MLFLOW_HTTP_REQUEST_TIMEOUT`` / ``MLFLOW_HTTP_REQUEST_MAX_RETRIES``; a file store is opened with
    ``MLFLOW_ALLOW_FILE_STORE=true``. These variables are set only for the call.
    """
    uri = resolve_tracking_uri(uri)
    if uri.startswith("sqlite:///"):
        path = Path(uri[len("sqlite:///"):].partition("?")[0])
        if not path.is_file():
            raise FaceSwapError(f"MLflow store {path} does not exist; train first (`faceswap-pl fit --config ...` "
                                f"logs there) or pass the store with --tracking-uri.")
    elif uri.startswith("file:"):
        from urllib.parse import unquote, urlparse

        path = Path(unquote(urlparse(uri).path))
        if not path.is_dir():
            raise FaceSwapError(f"MLflow file store {path} does not exist; pass an existing store with "
                                f"--tracking-uri.")
    http = _is_http(uri)
    settings = {}
    if http:
        settings = {"MLFLOW_HTTP_REQUEST_TIMEOUT": HTTP_TIMEOUT_S, "MLFLOW_HTTP_REQUEST_MAX_RETRIES": HTTP_MAX_RETRIES}
    elif uri.startswith("file:"):
        settings = {"MLFLOW_ALLOW_FILE_STORE": "true"}  # MLflow 3 refuses file stores unless asked; we only read
    saved = {}
    for name, value in settings.items():
        saved[name] = os.environ.get(name)
        if saved[name] is None:
            os.environ[name] = str(value)
    try:
        from mlflow import MlflowClient
        from mlflow.exceptions import MlflowException

        try:
            yield MlflowClient(tracking_uri=uri), uri
        except MlflowException as error:
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            reason = reason.split(". Response body")[0]
            if len(reason) > 300:
                reason = reason[:297] + "..."
            if http:
                raise FaceSwapError(_server_error(uri, str(error), reason)) from None
            raise FaceSwapError(f"MLflow store {uri} could not be read ({reason}); check that it is an MLflow "
                                f"store or pass another with --tracking-uri.") from None
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)


def _server_error(uri: str, message: str, reason: str) -> str:
    """One sentence for a failed request to a tracking server: unreachable, too slow, or not MLflow."""
    from urllib.parse import urlparse

    parsed = urlparse(uri)
    start = f"mlflow server --host {parsed.hostname} --port {parsed.port or (443 if parsed.scheme == 'https' else 80)}"
    lowered = message.lower()
    if any(s in lowered for s in ("timed out", "timeout")):
        why = f"did not answer within {os.environ.get('MLFLOW_HTTP_REQUEST_TIMEOUT', HTTP_TIMEOUT_S)} s"
    elif any(s in lowered for s in ("connection refused", "failed to establish", "newconnectionerror",
                                    "max retries exceeded", "name or service not known", "nameresolution",
                                    "connectionerror", "connection aborted")):
        why = "is not reachable (no server answers there)"
    else:
        return (f"MLflow server {uri} answered with an error ({reason}); check that the address is an MLflow "
                f"tracking server (--tracking-uri or MLFLOW_TRACKING_URI).")
    return (f"MLflow server {uri} {why}; start it with `{start}` or check the address "
            f"(--tracking-uri or MLFLOW_TRACKING_URI).")


def _all_runs(client, experiment_id: str, max_results: int | None = None) -> list:
    runs, token = [], None
    while True:
        page = client.search_runs([experiment_id], max_results=1000, page_token=token,
                                  order_by=["attributes.start_time DESC"])
        runs.extend(page)
        token = page.token
        if not token or (max_results is not None and len(runs) >= max_results):
            return runs


def _has_runs(client, experiment_id: str) -> bool:
    return len(client.search_runs([experiment_id], max_results=1)) > 0


def _experiments(client) -> list:
    return list(client.search_experiments(max_results=50000))


def list_experiments(uri: str | None = None) -> list[tuple[str, str, int]]:
    """``(name, id, number of active runs)`` of every active experiment, the most recently created first."""
    with _tracking_client(uri) as (client, _):
        experiments = sorted(_experiments(client), key=lambda e: e.creation_time or 0, reverse=True)
        return [(e.name, e.experiment_id, len(_all_runs(client, e.experiment_id))) for e in experiments]


def _names(items) -> str:
    items = list(items)
    return ", ".join(items) if items else "none"


def _pick_experiment(client, uri: str, name: str | None):
    """``(experiment, note)``: the named experiment, else the newest non-default one that has runs."""
    experiments = _experiments(client)
    if name is not None:
        experiment = client.get_experiment_by_name(name)
        if experiment is None and name.isdigit():
            experiment = next((e for e in experiments if e.experiment_id == name), None)
        if experiment is None:
            raise FaceSwapError(f"Experiment {name!r} is not in {uri}; available: "
                                f"{_names(sorted(e.name for e in experiments))} (pass one with --experiment).")
        if not _has_runs(client, experiment.experiment_id):
            raise FaceSwapError(f"Experiment {experiment.name!r} in {uri} has no runs; train into it first or "
                                f"pick another with --experiment (`faceswap-pl runs list-experiments`).")
        return experiment, ""
    with_runs = [e for e in experiments if _has_runs(client, e.experiment_id)]
    if not with_runs:
        raise FaceSwapError(f"No runs in {uri}; train first (`faceswap-pl fit --config experiments/tiny_cpu.yaml`) "
                            f"or pass the store that holds them with --tracking-uri.")
    candidates = [e for e in with_runs if e.experiment_id != "0" and e.name != "Default"] or with_runs
    candidates.sort(key=lambda e: e.creation_time or 0, reverse=True)
    note = ""
    if len(candidates) > 1:
        others = ", ".join(e.name for e in candidates[1:])
        note = f"newest of {len(candidates)} experiments with runs; others: {others} (choose with --experiment)"
    return candidates[0], note


# ---------------------------------------------------------------- comparison

def default_ascending(metric: str) -> bool:
    """Sort direction for a metric: descending for similarities and accuracies, ascending for errors and losses."""
    name = metric.lower()
    if any(token in name for token in LOWER_IS_BETTER):
        return True
    return not any(token in name for token in HIGHER_IS_BETTER)


def _metric_order(metric: str) -> tuple:
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


def _value(metrics: dict, name: str) -> float | None:
    value = metrics.get(name)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value


def _duration(info) -> str:
    if not info.end_time or not info.start_time:
        return "running" if info.status == "RUNNING" else "-"
    seconds = max(0, round((info.end_time - info.start_time) / 1000))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"


def _started(info) -> str:
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
    with _tracking_client(uri) as (client, uri):
        chosen, note = _pick_experiment(client, uri, experiment)
        runs = _all_runs(client, chosen.experiment_id)
    logged = sorted({key for run in runs for key in run.data.metrics}, key=_metric_order)
    all_params = sorted({key for run in runs for key in run.data.params})

    def check_metric(name: str, option: str) -> None:
        if name not in logged:
            raise FaceSwapError(f"Metric {name!r} ({option}) was not logged by any run of {chosen.name!r}; "
                                f"available: {_names(logged)}.")

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
    present = [r for r in runs if _value(r.data.metrics, sort) is not None]
    missing = [r for r in runs if _value(r.data.metrics, sort) is None]
    present.sort(key=lambda r: r.data.metrics[sort], reverse=not ascending)
    total = len(runs)
    runs = (present + missing)[:limit] if limit else present + missing

    if params:
        unknown = [p for p in params if p not in all_params]
        if unknown:
            raise FaceSwapError(f"Param {unknown[0]!r} (--param) was not logged by any run of {chosen.name!r}; "
                                f"available: {_names(all_params)}.")
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
                     *[_value(run.data.metrics, m) for m in metric_columns],
                     *[run.data.params.get(p) for p in param_columns],
                     info.status.lower(), _started(info), _duration(info)])
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
    (:func:`faceswap_pl.sweep.stats.describe`), best group first, and Welch's p against the best group."""

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
    from faceswap_pl.sweep.stats import describe, welch_p

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


def plot_groups(result: GroupComparison, out_png: str | os.PathLike) -> Path:
    """The groups' means with their 95% intervals as error bars, one panel per metric."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    labels = [", ".join(str(v) for v in g["key"].values()) for g in result.groups]
    fig, axes = plt.subplots(1, len(result.metrics), figsize=(1.5 + 1.1 * max(3, len(labels)) * len(result.metrics),
                                                              4), squeeze=False)
    for ax, metric in zip(axes[0], result.metrics):
        summaries = [g["summary"][metric] for g in result.groups]
        ax.errorbar(np.arange(len(labels)), [s["mean"] for s in summaries],
                    yerr=[s["ci95"] if np.isfinite(s["ci95"]) else 0.0 for s in summaries], fmt="o", capsize=4)
        ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
        ax.set_ylabel(metric)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(f"mean and 95% interval per {', '.join(result.group_by)}")
    fig.tight_layout()
    path = Path(out_png)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# ---------------------------------------------------------------- plots

def plot_metric_curves(uri: str | None, run_ids: list[str], metrics: list[str], out_png: str | os.PathLike) -> Path:
    """One subplot per metric, one line per run (metric history against step); writes and returns ``out_png``."""
    if not run_ids:
        raise FaceSwapError("No runs to plot; pass at least one run id.")
    if not metrics:
        raise FaceSwapError("No metrics to plot; pass at least one metric name.")
    with _tracking_client(uri) as (client, uri):
        from mlflow.exceptions import MlflowException

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
                                f"{_names(sorted(logged, key=_metric_order))}.")

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    cols = min(3, len(metrics))
    nrows = math.ceil(len(metrics) / cols)
    figure = Figure(figsize=(5.0 * cols, 3.4 * nrows + 0.6), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(nrows, cols, squeeze=False).ravel()
    if len(run_ids) <= 10:
        styles = [(f"C{i}", "-") for i in range(len(run_ids))]
    else:  # 20 colours, then dashed and dotted lines
        from matplotlib import colormaps

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


# ---------------------------------------------------------------- CLI

def _format(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    text = str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _print_groups(args: argparse.Namespace, console) -> int:
    import math

    from rich.table import Table

    from faceswap_pl.sweep.stats import interval

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
    from rich.table import Table

    from faceswap_pl.cli import _console

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
    from rich.measure import Measurement

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
    from rich.table import Table

    from faceswap_pl.cli import _console

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




def add_runs_parser(sub) -> None:
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
