"""`faceswap-pl sweep report`: what an ablation shows, with intervals over seeds, as markdown and PNG plots.

The report answers the paper's question -- which factor changes the evaluation metrics, by how much --
from the trials' final evaluations (``seed_metrics``, one per seed; :mod:`faceswap_pl.sweep.worker`):

* the protocol: objectives, seeds per configuration, the retrieval gallery (identities, images) and the
  chance levels of top-1 / top-5;
* configurations: per configuration the mean and 95% interval over its seeds of every objective and
  evaluation metric (:mod:`faceswap_pl.stats`), and for each objective whether it differs from the
  best configuration by Welch's t-test (``p < 0.05``: significant; otherwise the difference is within seed
  noise);
* factors: for each swept parameter the marginal mean of each objective per level (all runs of that level,
  over the other factors and the seeds) with its interval;
* for several objectives, the Pareto front of the configurations' means;
* the Optuna trial table (states, retries, MLflow runs);
* plots: the objectives per configuration and per factor level with their intervals as error bars, the
  optimisation history and, for the backbone x AAD grid, a heatmap of the means.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from faceswap_pl.stats import ALPHA, describe, interval, welch_p
from faceswap_pl.sweep.spec import EVAL_METRICS, SweepSpec, cli_value

HEATMAP_PARAMS = ("model.backbone", "model.num_aad_blocks")
STATE_ORDER = {"COMPLETE": 0, "PRUNED": 1, "RUNNING": 2, "WAITING": 3, "FAIL": 4}
PROTOCOL_KEYS = ("eval/gallery_identities", "eval/gallery_images", "eval/id_top1_chance", "eval/id_top5_chance")


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _sign(direction: str) -> float:
    return -1.0 if direction == "maximize" else 1.0


def report_metrics(spec: SweepSpec) -> list[str]:
    """The objectives first, then every other evaluation metric."""
    others = [f"eval/{name}" for name in EVAL_METRICS if f"eval/{name}" not in spec.metrics and name != "select"]
    return spec.metrics + others


def configurations(study, spec: SweepSpec) -> list[dict]:
    """The completed configurations: trial, params, per-seed final metrics and their summary, best first."""
    found = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        seeds = trial.user_attrs.get("seed_metrics") or {}
        if not seeds:
            continue
        values = {metric: [final[metric] for final in seeds.values() if metric in final]
                  for metric in report_metrics(spec)}
        found.append({"trial": trial.number, "params": trial.params, "seeds": seeds, "values": values,
                      "summary": {metric: describe(v) for metric, v in values.items()}})
    metric, direction = spec.objectives[0]
    found.sort(key=lambda c: (_sign(direction) * c["summary"][metric]["mean"]
                              if math.isfinite(c["summary"][metric]["mean"]) else math.inf, c["trial"]))
    return found


def protocol(configs: list[dict]) -> dict[str, float]:
    """Gallery size and chance levels, as the runs logged them."""
    for config in configs:
        for final in config["seeds"].values():
            if all(key in final for key in PROTOCOL_KEYS):
                return {key: final[key] for key in PROTOCOL_KEYS}
    return {}


def significance(configs: list[dict], metric: str, direction: str) -> dict[int, str]:
    """trial -> "best", "worse (p=...)" or "n.s. (p=...)" for ``metric`` against the best configuration."""
    if not configs:
        return {}
    scored = [c for c in configs if math.isfinite(c["summary"][metric]["mean"])]
    if not scored:
        return {}
    best = min(scored, key=lambda c: _sign(direction) * c["summary"][metric]["mean"])
    marks = {}
    for config in configs:
        if config is best:
            marks[config["trial"]] = "best"
            continue
        p = welch_p(config["values"][metric], best["values"][metric])
        if not math.isfinite(p):
            marks[config["trial"]] = "no test (1 seed)"
        else:
            marks[config["trial"]] = f"{'worse' if p < ALPHA else 'n.s.'} (p={p:.2g})"
    return marks


def marginal_means(configs: list[dict], spec: SweepSpec) -> list[dict]:
    """Per swept parameter and level: the pooled runs' mean and interval of every objective."""
    rows = []
    for name, param in spec.space.items():
        levels = param["choices"] if param["type"] == "categorical" else sorted(
            {c["params"][name] for c in configs if name in c["params"]})
        if len(levels) < 2:
            continue
        for level in levels:
            chosen = [c for c in configs if c["params"].get(name) == level]
            if not chosen:
                continue
            summary = {metric: describe([v for c in chosen for v in c["values"][metric]]) for metric in spec.metrics}
            rows.append({"factor": name, "level": level, "configs": len(chosen),
                         "runs": sum(len(c["seeds"]) for c in chosen), "summary": summary})
    return rows


def markdown_table(study, spec: SweepSpec) -> str:
    """Every Optuna trial: state, params, objective value(s), duration, retries, MLflow run."""
    params = list(spec.space)
    header = ["trial", "state", *params, *spec.metrics, "duration (s)", "retry of", "MLflow run"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for t in sorted(study.get_trials(deepcopy=False), key=lambda t: (STATE_ORDER.get(t.state.name, 5), t.number)):
        duration = t.duration.total_seconds() if t.duration else None
        values = list(t.values) if t.values else [None] * len(spec.metrics)
        if t.values is None and t.intermediate_values:  # pruned or running: its last reported value
            values[0] = t.intermediate_values[max(t.intermediate_values)]
        row = [str(t.number), t.state.name, *(cli_value(t.params[p]) if p in t.params else "-" for p in params),
               *(_fmt(v) for v in values), f"{duration:.1f}" if duration is not None else "-",
               _fmt(t.system_attrs.get("failed_trial")), t.user_attrs.get("mlflow_run_id", "-")]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def _configuration_table(configs: list[dict], spec: SweepSpec) -> list[str]:
    params = list(spec.space)
    metrics = report_metrics(spec)
    marks = {metric: significance(configs, metric, direction) for metric, direction in spec.objectives}
    header = ["rank", "trial", *params, "seeds", *metrics, *(f"vs best: {m}" for m in spec.metrics)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for rank, config in enumerate(configs, 1):
        row = [str(rank), str(config["trial"]), *(cli_value(config["params"].get(p, "-")) for p in params),
               str(len(config["seeds"])), *(interval(config["summary"][m]) for m in metrics),
               *(marks[m].get(config["trial"], "-") for m in spec.metrics)]
        lines.append("| " + " | ".join(row) + " |")
    return lines


def _factor_table(rows: list[dict], spec: SweepSpec) -> list[str]:
    header = ["factor", "level", "configurations", "runs", *spec.metrics]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        lines.append("| " + " | ".join([row["factor"], cli_value(row["level"]), str(row["configs"]), str(row["runs"]),
                                        *(interval(row["summary"][m]) for m in spec.metrics)]) + " |")
    return lines


def _pareto(study, spec: SweepSpec, configs: list[dict]) -> list[str]:
    try:
        front = {t.number for t in study.best_trials}
    except Exception:  # no completed trial
        return []
    chosen = [c for c in configs if c["trial"] in front]
    if not chosen:
        return []
    lines = ["## Pareto front", "", f"Configurations no other beats on every objective ({', '.join(spec.metrics)}), "
             "by their means:", ""]
    for config in chosen:
        lines.append(f"- trial {config['trial']}: " + ", ".join(f"{k}={cli_value(v)}" for k, v in config["params"].items())
                     + "; " + ", ".join(f"{m} {interval(config['summary'][m])}" for m in spec.metrics))
    return lines + [""]


# ---------------------------------------------------------------- plots

CHANCE = {"eval/id_top1": "eval/id_top1_chance", "eval/id_top5": "eval/id_top5_chance"}


def _error_bars(ax, labels: list[str], summaries: list[dict], metric: str, chance: dict[str, float]) -> None:
    means = [s["mean"] for s in summaries]
    errors = [s["ci95"] if math.isfinite(s["ci95"]) else 0.0 for s in summaries]
    ax.errorbar(np.arange(len(labels)), means, yerr=errors, fmt="o", capsize=4)
    if CHANCE.get(metric) in chance:
        ax.axhline(chance[CHANCE[metric]], color="grey", linestyle="--", label="chance")
        ax.legend(loc="best", fontsize="small")
    ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
    ax.set_ylabel(metric)
    ax.grid(axis="y", alpha=0.3)


def _figure(rows: int = 1, cols: int = 1, figsize: tuple[float, float] = (6, 4), **kwargs):
    """A figure drawn by the Agg canvas and its axes, without pyplot's global state or backend."""
    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig, fig.subplots(rows, cols, **kwargs)


def _plot_configurations(configs: list[dict], spec: SweepSpec, path: Path, chance: dict[str, float]) -> Path | None:
    if not configs:
        return None
    labels = [", ".join(cli_value(v) for v in c["params"].values()) for c in configs]
    fig, axes = _figure(1, len(spec.metrics), figsize=(1.5 + 1.2 * len(configs) * len(spec.metrics), 4),
                        squeeze=False)
    for ax, metric in zip(axes[0], spec.metrics):
        _error_bars(ax, labels, [c["summary"][metric] for c in configs], metric, chance)
    seeds = max(len(c["seeds"]) for c in configs)
    fig.suptitle(f"per configuration: mean and 95% interval over {seeds} seed(s)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


def _plot_factors(rows: list[dict], spec: SweepSpec, path: Path, chance: dict[str, float]) -> Path | None:
    factors = list(dict.fromkeys(row["factor"] for row in rows))
    if not factors:
        return None
    fig, axes = _figure(len(spec.metrics), len(factors), figsize=(1 + 3 * len(factors), 3 * len(spec.metrics)),
                        squeeze=False)
    for j, factor in enumerate(factors):
        chosen = [row for row in rows if row["factor"] == factor]
        for i, metric in enumerate(spec.metrics):
            _error_bars(axes[i][j], [cli_value(r["level"]) for r in chosen], [r["summary"][metric] for r in chosen],
                        metric, chance)
            axes[i][j].set_title(f"{factor}")
    fig.suptitle("marginal means per level, 95% intervals")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


def _plot_history(study, spec: SweepSpec, path: Path) -> Path | None:
    if spec.multi_objective:
        return None
    complete = sorted(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)), key=lambda t: t.number)
    if not complete:
        return None
    best, current = [], None
    for t in complete:
        if current is None or (t.value > current if spec.direction == "maximize" else t.value < current):
            current = t.value
        best.append(current)
    fig, ax = _figure(figsize=(6, 4))
    ax.plot([t.number for t in complete], [t.value for t in complete], "o", label="trial (mean over seeds)")
    ax.step([t.number for t in complete], best, where="post", label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel(spec.metric)
    ax.set_title(f"{study.study_name}: optimisation history ({spec.direction})")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


def _plot_heatmap(configs: list[dict], spec: SweepSpec, name: str, path: Path) -> Path | None:
    if not all(p in spec.space for p in HEATMAP_PARAMS) or not configs:
        return None
    rows_p, cols_p = HEATMAP_PARAMS

    def axis(param):
        p = spec.space[param]
        return list(p["choices"] if p["type"] == "categorical" else sorted({c["params"][param] for c in configs}))

    rows, cols = axis(rows_p), axis(cols_p)
    grid = np.full((len(rows), len(cols)), np.nan)
    for c in configs:  # one configuration per cell; the mean over its seeds
        grid[rows.index(c["params"][rows_p]), cols.index(c["params"][cols_p])] = c["summary"][spec.metric]["mean"]
    fig, ax = _figure(figsize=(1.5 + 1.2 * len(cols), 1.2 + 0.8 * len(rows)))
    image = ax.imshow(grid, cmap="viridis" if spec.direction == "maximize" else "viridis_r")
    ax.set_xticks(range(len(cols)), [str(c) for c in cols])
    ax.set_yticks(range(len(rows)), [str(r) for r in rows])
    ax.set_xlabel(cols_p)
    ax.set_ylabel(rows_p)
    for r in range(len(rows)):
        for c in range(len(cols)):
            ax.text(c, r, "-" if np.isnan(grid[r, c]) else f"{grid[r, c]:.3g}", ha="center", va="center",
                    color="white")
    fig.colorbar(image, ax=ax, label=f"mean {spec.metric}")
    ax.set_title(f"{name}: {spec.metric}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


def write_report(study, spec: SweepSpec, out: Path) -> tuple[str, list[Path]]:
    """Write ``<out>/report.md`` and the PNGs; return the markdown and the files."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    name = study.study_name
    configs = configurations(study, spec)
    factors = marginal_means(configs, spec)
    found = protocol(configs)
    plots = [p for p in (_plot_configurations(configs, spec, out / f"{name}_configurations.png", found),
                         _plot_factors(factors, spec, out / f"{name}_factors.png", found),
                         _plot_history(study, spec, out / f"{name}_history.png"),
                         _plot_heatmap(configs, spec, name, out / f"{name}_heatmap.png")) if p is not None]
    counts = {s.name: sum(t.state == s for t in study.get_trials(deepcopy=False)) for s in TrialState}
    summary = ", ".join(f"{n} {s.lower()}" for s, n in counts.items() if n)
    objectives = "; ".join(f"{d} `{m}`" for m, d in spec.objectives)
    text = [f"# Sweep {name}", "",
            f"Objective{'s' if spec.multi_objective else ''}: {objectives}. {spec.n_trials} configurations asked "
            f"({summary}); each trained with {spec.repeats} seed(s) ({', '.join(map(str, spec.seeds()))}), "
            f"ranked by the mean over its seeds.", ""]
    if found:
        text += [f"Evaluation protocol: identity retrieval among all {found['eval/gallery_identities']:.0f} identities "
                 f"of the evaluation split ({found['eval/gallery_images']:.0f} gallery images, sources and targets); "
                 f"chance is {found['eval/id_top1_chance']:.3f} for top-1 and {found['eval/id_top5_chance']:.3f} for "
                 f"top-5.", ""]
    if configs:
        text += ["## Configurations", "",
                 "Mean ± half-width of the 95% interval over the seeds (Student's t). \"vs best\": Welch's t-test of "
                 f"each configuration against the best one; \"worse\" means p < {ALPHA}, \"n.s.\" that the "
                 "difference is within seed noise.", "", *_configuration_table(configs, spec), ""]
    else:
        text += ["No configuration completed.", ""]
    if factors:
        text += ["## Factors", "",
                 "Marginal means: every run with that level, over the other factors and the seeds.", "",
                 *_factor_table(factors, spec), ""]
    if spec.multi_objective:
        text += _pareto(study, spec, configs)
    text += ["## Trials", "", markdown_table(study, spec), ""]
    text += [f"![{p.stem}]({p.name})" for p in plots]
    markdown = "\n".join(text) + "\n"
    (out / "report.md").write_text(markdown)
    return markdown, plots


def log_report(tracking_uri: str, run_id: str, files: list[Path]) -> None:
    client = MlflowClient(tracking_uri)
    for path in files:
        client.log_artifact(run_id, str(path))
