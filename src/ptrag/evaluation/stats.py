"""Uncertainty and paired comparison across perturbations: bootstrap CIs and Wilcoxon tests."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from ptrag.config.arms import BASELINE_ARM
from ptrag.evaluation.metric_registry import METRICS, metric

__all__ = ["bootstrap_ci", "paired_tests"]


def bootstrap_ci(
    values: ArrayLike,
    confidence: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
    statistic: Callable[..., NDArray[np.float64]] = np.mean,
) -> tuple[float, float]:
    """Percentile bootstrap CI of ``statistic`` over perturbations; NaNs are dropped first.

    ``statistic`` must accept ``axis=1`` (np.mean, np.median). Returns (nan, nan) for no values.
    """
    data = np.asarray(values, dtype=np.float64)
    data = data[~np.isnan(data)]
    if data.size == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    samples = data[rng.integers(0, data.size, size=(n_boot, data.size))]
    stats = statistic(samples, axis=1)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(stats, [alpha, 1.0 - alpha])
    return float(low), float(high)


def paired_tests(
    results: pd.DataFrame,
    baseline: str = BASELINE_ARM,
    metrics: Sequence[str] | None = None,
    arm_col: str = "arm",
    keys: Sequence[str] = ("cell_type", "perturbation"),
) -> pd.DataFrame:
    """Paired two-sided Wilcoxon signed-rank test of every arm against ``baseline``, per metric.

    ``results`` is a long table: one row per (arm, cell type, perturbation) with one column per
    metric. Pairs are matched on ``keys``; a pair with a NaN on either side is dropped. Differences
    are arm − baseline (scipy's default zero_method="wilcox"). Wins/losses use each metric's
    direction in the metric registry (sd_ratio: closer to 1 wins); an unregistered metric is a
    ValueError.
    """
    from scipy.stats import wilcoxon

    names = [m for m in (metrics or METRICS) if m in results.columns]
    specs = {name: metric(name) for name in names}
    base = results[results[arm_col] == baseline].set_index(list(keys))
    if base.empty:
        raise ValueError(f"baseline arm {baseline!r} not found in column {arm_col!r}")
    rows = []
    for arm in [a for a in pd.unique(results[arm_col]) if a != baseline]:
        other = results[results[arm_col] == arm].set_index(list(keys))
        joined = other.join(base, how="inner", lsuffix="_arm", rsuffix="_base")
        for name in names:
            a = joined[f"{name}_arm"].to_numpy(dtype=np.float64)
            b = joined[f"{name}_base"].to_numpy(dtype=np.float64)
            keep = ~(np.isnan(a) | np.isnan(b))
            a, b = a[keep], b[keep]
            diff = a - b
            outcome = specs[name].better(a, b)
            statistic = p_value = float("nan")
            if diff.size and np.any(diff != 0):
                test = wilcoxon(a, b)
                statistic, p_value = float(test.statistic), float(test.pvalue)
            rows.append(
                {
                    "arm": arm,
                    "baseline": baseline,
                    "metric": name,
                    "n_pairs": int(diff.size),
                    "median_difference": float(np.median(diff)) if diff.size else float("nan"),
                    "mean_difference": float(diff.mean()) if diff.size else float("nan"),
                    "wins": int((outcome > 0).sum()),
                    "losses": int((outcome < 0).sum()),
                    "ties": int((outcome == 0).sum()),
                    "statistic": statistic,
                    "p_value": p_value,
                }
            )
    return pd.DataFrame(rows)
