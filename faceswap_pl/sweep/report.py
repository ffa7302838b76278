"""`faceswap-pl sweep report`: a ranked markdown table of a study's trials and PNG plots."""

from __future__ import annotations

import math
from pathlib import Path

from faceswap_pl.sweep.spec import SweepSpec, cli_value

HEATMAP_PARAMS = ("model.backbone", "model.num_aad_blocks")
STATE_ORDER = {"COMPLETE": 0, "PRUNED": 1, "RUNNING": 2, "WAITING": 3, "FAIL": 4}


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def ranked_trials(study, spec: SweepSpec) -> list:
    sign = -1.0 if spec.direction == "maximize" else 1.0

    def key(t):
        value = t.value
        if value is None and t.intermediate_values:  # pruned: its last reported value
            value = t.intermediate_values[max(t.intermediate_values)]
        return (STATE_ORDER.get(t.state.name, 5), sign * value if value is not None and math.isfinite(value)
                else math.inf, t.number)

    return sorted(study.get_trials(deepcopy=False), key=key)


def markdown_table(study, spec: SweepSpec) -> str:
    params = list(spec.space)
    header = ["rank", "trial", "state", *params, spec.metric, "duration (s)", "retry of", "MLflow run"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for rank, t in enumerate(ranked_trials(study, spec), 1):
        duration = t.duration.total_seconds() if t.duration else None
        value = t.value
        if value is None and t.intermediate_values and t.state.name in ("PRUNED", "RUNNING"):
            value = t.intermediate_values[max(t.intermediate_values)]  # the last reported value
        row = [str(rank), str(t.number), t.state.name, *(cli_value(t.params[p]) if p in t.params else "-" for p in params),
               _fmt(value), f"{duration:.1f}" if duration is not None else "-",
               _fmt(t.system_attrs.get("failed_trial")), t.user_attrs.get("mlflow_run_id", "-")]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def _plot_history(study, spec, path: Path) -> Path | None:
    import matplotlib.pyplot as plt
    from optuna.trial import TrialState

    complete = sorted((t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))),
                      key=lambda t: t.number)
    if not complete:
        return None
    best, current = [], None
    for t in complete:
        if current is None or (t.value > current if spec.direction == "maximize" else t.value < current):
            current = t.value
        best.append(current)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([t.number for t in complete], [t.value for t in complete], "o", label="trial")
    ax.step([t.number for t in complete], best, where="post", label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel(spec.metric)
    ax.set_title(f"{study.study_name}: optimisation history ({spec.direction})")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _plot_importances(study, spec, path: Path) -> Path | None:
    import matplotlib.pyplot as plt
    import optuna
    from optuna.trial import TrialState

    if len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))) < 2 or len(spec.space) < 1:
        return None
    try:
        importances = optuna.importance.get_param_importances(study)
    except Exception:  # too few distinct values, a single-valued parameter, ...
        return None
    if not importances:
        return None
    names = list(importances)[::-1]
    fig, ax = plt.subplots(figsize=(6, 1 + 0.5 * len(names)))
    ax.barh(names, [importances[n] for n in names])
    ax.set_xlabel("importance (fANOVA)")
    ax.set_title(f"{study.study_name}: parameter importances for {spec.metric}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _plot_heatmap(study, spec, path: Path) -> Path | None:
    import matplotlib.pyplot as plt
    import numpy as np
    from optuna.trial import TrialState

    if not all(p in spec.space for p in HEATMAP_PARAMS):
        return None
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        return None
    rows_p, cols_p = HEATMAP_PARAMS

    def axis(name):
        p = spec.space[name]
        values = p["choices"] if p["type"] == "categorical" else sorted({t.params[name] for t in complete})
        return list(values)

    rows, cols = axis(rows_p), axis(cols_p)
    grid = np.full((len(rows), len(cols)), np.nan)
    better = max if spec.direction == "maximize" else min
    for t in complete:
        r, c = rows.index(t.params[rows_p]), cols.index(t.params[cols_p])
        grid[r, c] = t.value if np.isnan(grid[r, c]) else better(grid[r, c], t.value)
    fig, ax = plt.subplots(figsize=(1.5 + 1.2 * len(cols), 1.2 + 0.8 * len(rows)))
    image = ax.imshow(grid, cmap="viridis" if spec.direction == "maximize" else "viridis_r")
    ax.set_xticks(range(len(cols)), [str(c) for c in cols])
    ax.set_yticks(range(len(rows)), [str(r) for r in rows])
    ax.set_xlabel(cols_p)
    ax.set_ylabel(rows_p)
    for r in range(len(rows)):
        for c in range(len(cols)):
            ax.text(c, r, "-" if np.isnan(grid[r, c]) else f"{grid[r, c]:.3g}", ha="center", va="center",
                    color="white")
    fig.colorbar(image, ax=ax, label=f"best {spec.metric}")
    ax.set_title(f"{study.study_name}: {spec.metric}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_report(study, spec: SweepSpec, out: Path) -> tuple[str, list[Path]]:
    """Write ``<out>/report.md`` and the PNGs; return the markdown and the files."""
    import matplotlib

    matplotlib.use("Agg")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    plots = []
    for name, plot in (("history", _plot_history), ("importances", _plot_importances), ("heatmap", _plot_heatmap)):
        path = plot(study, spec, out / f"{study.study_name}_{name}.png")
        if path is not None:
            plots.append(path)
    from optuna.trial import TrialState

    counts = {s.name: sum(t.state == s for t in study.get_trials(deepcopy=False)) for s in TrialState}
    summary = ", ".join(f"{n} {s.lower()}" for s, n in counts.items() if n)
    text = [f"# Sweep {study.study_name}", "",
            f"Objective: {spec.direction} `{spec.metric}`; {spec.n_trials} trials asked; {summary}.", ""]
    try:
        best = study.best_trial
        text += [f"Best: trial {best.number}, {spec.metric} = {best.value:.4g}, params "
                 + ", ".join(f"{k}={cli_value(v)}" for k, v in best.params.items()), ""]
    except ValueError:
        text += ["No trial completed.", ""]
    text += [markdown_table(study, spec), ""]
    text += [f"![{p.stem}]({p.name})" for p in plots]
    markdown = "\n".join(text) + "\n"
    (out / "report.md").write_text(markdown)
    return markdown, plots


def log_report(tracking_uri: str, run_id: str, files: list[Path]) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    for path in files:
        client.log_artifact(run_id, str(path))
