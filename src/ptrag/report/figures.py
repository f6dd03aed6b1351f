"""The report's figures, drawn from the summary dict alone and returned as PNG bytes."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: never needs a display

import matplotlib.pyplot as plt
import numpy as np

from ptrag.evaluation.metric_registry import metric as metric_spec
from ptrag.evaluation.metric_registry import metrics_where

ARM_COLOUR = "#3b6ea8"
REFERENCE_COLOUR = "#b0b0b0"


def _png(figure: Any) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def _value(x: Any) -> float:
    return float("nan") if x is None else float(x)


def metric_bars(summary: dict[str, Any], metrics: Sequence[str] | None = None) -> bytes | None:
    """Mean per method with its 95% bootstrap CI, one panel per metric; references in grey."""
    shown = [m for m in (metrics or metrics_where("plotted")) if m in summary["metrics"]]
    names = list(summary["methods"])
    if not shown or not names:
        return None
    columns = min(4, len(shown))
    rows = int(np.ceil(len(shown) / columns))
    figure, axes = plt.subplots(rows, columns, figsize=(3.4 * columns, 2.9 * rows), squeeze=False)
    for axis, metric_name in zip(axes.flat, shown, strict=False):
        stats = [summary["methods"][n]["metrics"][metric_name] for n in names]
        means = np.array([_value(s["mean"]) for s in stats])
        low = np.array([_value(s["ci_low"]) for s in stats])
        high = np.array([_value(s["ci_high"]) for s in stats])
        error = np.vstack([np.nan_to_num(means - low), np.nan_to_num(high - means)])
        colours = [ARM_COLOUR if summary["methods"][n]["kind"] == "arm" else REFERENCE_COLOUR for n in names]
        axis.bar(range(len(names)), np.nan_to_num(means), yerr=error, color=colours, capsize=3)
        axis.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=8)
        spec = metric_spec(metric_name)
        if spec.best_at is not None:
            axis.axhline(spec.best_at, color="black", lw=0.8, ls="--")
        axis.set_title(f"{metric_name} ({spec.direction} is better)", fontsize=9)
    for axis in list(axes.flat)[len(shown) :]:
        axis.axis("off")
    figure.suptitle("Mean over perturbations, 95% bootstrap CI (grey: references)", fontsize=10)
    figure.tight_layout()
    return _png(figure)


def paired_scatter(
    summary: dict[str, Any], arm: str = "ptrag", baseline: str = "st", metrics: Sequence[str] = ("w1", "w2")
) -> bytes | None:
    """Per-perturbation scatter of ``arm`` (y) against ``baseline`` (x); below the diagonal = arm better."""
    records = summary["per_perturbation"]
    shown = [m for m in metrics if m in summary["metrics"]]
    by_key: dict[str, dict[tuple[str, str], dict[str, Any]]] = {arm: {}, baseline: {}}
    for record in records:
        if record["method"] in by_key:
            by_key[record["method"]][(record["cell_type"], record["perturbation"])] = record
    shared = sorted(set(by_key[arm]) & set(by_key[baseline]))
    if not shared or not shown:
        return None
    figure, axes = plt.subplots(1, len(shown), figsize=(4.2 * len(shown), 4.0), squeeze=False)
    for axis, metric in zip(axes.flat, shown, strict=True):
        x = np.array([_value(by_key[baseline][k][metric]) for k in shared])
        y = np.array([_value(by_key[arm][k][metric]) for k in shared])
        keep = ~(np.isnan(x) | np.isnan(y))
        x, y = x[keep], y[keep]
        axis.scatter(x, y, s=12, alpha=0.6, color=ARM_COLOUR)
        if x.size:
            low, high = float(min(x.min(), y.min())), float(max(x.max(), y.max()))
            axis.plot([low, high], [low, high], color="black", lw=0.8)
        wins = int((y < x).sum())
        axis.set_xlabel(f"{baseline} {metric}")
        axis.set_ylabel(f"{arm} {metric}")
        axis.set_title(f"{metric}: {arm} lower on {wins}/{x.size}", fontsize=9)
    figure.tight_layout()
    return _png(figure)


def selection_distributions(summary: dict[str, Any]) -> bytes | None:
    """Per cell line: distribution of per-set selection rate and of kept-candidate count."""
    selection = summary.get("selection") or {}
    if not selection:
        return None
    lines = sorted(selection)
    figure, (rate_axis, kept_axis) = plt.subplots(1, 2, figsize=(9.0, 3.6))
    rate_axis.boxplot([selection[c]["selection_rate"] for c in lines])
    rate_axis.set_xticks(range(1, len(lines) + 1), lines)
    rate_axis.set_title("selection rate per set (mean keep weight)", fontsize=9)
    rate_axis.set_ylim(-0.05, 1.05)
    kept_axis.boxplot([selection[c]["kept_count"] for c in lines])
    kept_axis.set_xticks(range(1, len(lines) + 1), lines)
    kept_axis.set_title("kept candidates per set", fontsize=9)
    figure.tight_layout()
    return _png(figure)


def all_figures(summary: dict[str, Any], scatter_arm: str = "ptrag") -> dict[str, bytes]:
    """name → PNG bytes for every figure the summary has data for."""
    drawn = {
        "metric_bars": metric_bars(summary),
        "scatter_w1_w2": paired_scatter(summary, arm=scatter_arm, baseline=summary.get("baseline", "st")),
        "selection": selection_distributions(summary),
    }
    return {name: png for name, png in drawn.items() if png is not None}
