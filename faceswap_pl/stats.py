"""Statistics of repeated runs: means with 95% confidence intervals and Welch's t-test.

A configuration trained with n seeds gives n values of each metric. Its interval is Student's t
interval of the mean, ``mean +- t(0.975, n - 1) * s / sqrt(n)`` (``s`` the sample standard deviation):
with few seeds it is wide, and with one seed there is none (NaN). Two configurations are told apart
with Welch's t-test (unequal variances; two-sided): a difference is called significant when ``p < 0.05``.
With 2-3 seeds per configuration only large differences reach that, which is the point: a smaller one
is not distinguishable from seed noise.

Example:
    >>> figures = describe([0.50, 0.54, 0.52])
    >>> round(figures["mean"], 3), round(figures["ci95"], 3)
    (0.52, 0.05)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

ALPHA = 0.05


def describe(values: Sequence[float]) -> dict[str, float]:
    """``{"n", "mean", "std", "ci95", "low", "high"}`` of a sample (``ci95`` the interval's half-width)."""
    from scipy import stats

    values = [float(v) for v in values if v is not None and math.isfinite(v)]
    n = len(values)
    if n == 0:
        nan = float("nan")
        return {"n": 0, "mean": nan, "std": nan, "ci95": nan, "low": nan, "high": nan}
    mean = sum(values) / n
    if n == 1:
        return {"n": 1, "mean": mean, "std": float("nan"), "ci95": float("nan"), "low": float("nan"),
                "high": float("nan")}
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = float(stats.t.ppf(1 - ALPHA / 2, n - 1)) * std / math.sqrt(n)
    return {"n": n, "mean": mean, "std": std, "ci95": half, "low": mean - half, "high": mean + half}


def welch_p(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided p-value of Welch's t-test of ``mean(a) == mean(b)``; NaN when a side has fewer than 2 values
    or both have no spread."""
    from scipy import stats

    a = [float(v) for v in a if math.isfinite(v)]
    b = [float(v) for v in b if math.isfinite(v)]
    if len(a) < 2 or len(b) < 2:
        return float("nan")
    if max(a) == min(a) and max(b) == min(b):
        return 0.0 if a[0] != b[0] else 1.0
    return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


def interval(figures: dict[str, float], digits: int = 3) -> str:
    """``mean ± half-width`` (or the mean alone for one value) as text."""
    if figures["n"] == 0:
        return "-"
    if not math.isfinite(figures["ci95"]):
        return f"{figures['mean']:.{digits}f}"
    return f"{figures['mean']:.{digits}f} ± {figures['ci95']:.{digits}f}"
