"""The report's figures, drawn from the summary dict alone and returned as PNG bytes.

First the headline figure: the scoreboard's metrics for every split (:func:`headline_dots`). Then
per split: a dot plot of each headline metric (mean and 95% bootstrap CI per method, on an axis
zoomed to the data; arms in colour, references in grey, the noise floor hollow), and the selection
rate of every arm with a selector, over training steps and at prediction.
"""

from __future__ import annotations

import io
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: never needs a display

import matplotlib.pyplot as plt
import numpy as np

from ptrag.evaluation.metric_registry import metric as metric_spec
from ptrag.evaluation.metric_registry import metrics_where
from ptrag.report.comparisons import NOISE_FLOOR
from ptrag.retrieval import COLLAPSED_SELECTION

__all__ = ["all_figures"]

REFERENCE_COLOUR = "#9a9a9a"
RATE_FLOOR = 1e-4  # selection rates of 0 are drawn here on the log axis
ARM_PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")


def _png(figure: Any) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def _value(x: Any) -> float:
    return float("nan") if x is None else float(x)


def arm_colours(section: dict[str, Any]) -> dict[str, str]:
    arms = [n for n, m in section["methods"].items() if m["kind"] == "arm"]
    return {arm: ARM_PALETTE[i % len(ARM_PALETTE)] for i, arm in enumerate(arms)}


def _dot_panel(axis: Any, section: dict[str, Any], name: str, baseline: str, labelled: bool) -> None:
    """One metric of one split: each method's mean (dot) and 95% CI (line) on a zoomed axis."""
    methods = section["methods"]
    names = list(methods)
    colours = arm_colours(section)
    positions = np.arange(len(names))[::-1]
    stats = [methods[method]["metrics"].get(name) or {} for method in names]
    means = np.array([_value(s.get("mean")) for s in stats])
    lows = np.array([_value(s.get("ci_low")) for s in stats])
    highs = np.array([_value(s.get("ci_high")) for s in stats])
    edge = [colours.get(method, REFERENCE_COLOUR) for method in names]
    face = ["white" if method == NOISE_FLOOR else c for method, c in zip(names, edge, strict=True)]
    limits = _zoomed_limits(names, means, lows, highs)
    if limits is not None:
        # A noise floor far off the others' scale (split-half V-statistics) is drawn at the edge
        # with its value, so that the methods' differences stay visible.
        means, lows, highs = _clip_far_noise_floor(axis, names, positions, means, lows, highs, limits)
        axis.set_xlim(*limits)
    axis.hlines(positions, lows, highs, colors=edge, lw=2)
    axis.scatter(means, positions, s=30, c=face, edgecolors=edge, linewidths=1.2, zorder=3)
    base = methods.get(baseline, {}).get("metrics", {}).get(name)
    if base is not None and base["mean"] is not None:
        axis.axvline(base["mean"], color=colours.get(baseline, "black"), lw=0.8, ls="--")
    axis.set_yticks(positions, names if labelled else [], fontsize=8)
    axis.set_ylim(-0.6, len(names) - 0.4)
    axis.tick_params(axis="x", labelsize=7)
    axis.grid(axis="x", color="#e5e5e5", lw=0.6)


def _key(baseline: str) -> str:
    return f"colour: arms; grey: references; hollow: {NOISE_FLOOR}; dashed: {baseline}"


def metric_dots(section: dict[str, Any], label: str, baseline: str) -> bytes | None:
    """One panel per headline metric: each method's mean (dot) and 95% CI (line), zoomed axis."""
    methods = section["methods"]
    shown = [m for m in metrics_where("headline") if any(m in e["metrics"] for e in methods.values())]
    if not shown or not methods:
        return None
    columns = min(4, len(shown))
    rows = int(np.ceil(len(shown) / columns))
    height = 0.8 + 0.24 * len(methods)
    figure, axes = plt.subplots(rows, columns, figsize=(3.1 * columns, height * rows), squeeze=False)
    for index, (axis, name) in enumerate(zip(axes.flat, shown, strict=False)):
        _dot_panel(axis, section, name, baseline, labelled=index % columns == 0)
        axis.set_title(f"{name} ({metric_spec(name).direction} is better)", fontsize=8.5)
    for axis in list(axes.flat)[len(shown) :]:
        axis.axis("off")
    figure.suptitle(f"{label}: mean over test perturbations and 95% CI ({_key(baseline)})", fontsize=9)
    figure.tight_layout()
    return _png(figure)


def headline_dots(summary: dict[str, Any]) -> bytes | None:
    """The first screen's figure: the scoreboard's metrics (columns) for every split (rows), each
    method's mean and 95% CI over test perturbations, drawn as :func:`metric_dots` draws them."""
    splits = {
        name: section
        for name, section in summary["splits"].items()
        if section["methods"] and (section.get("scoreboard") or {}).get("metrics")
    }
    if not splits:
        return None
    shown = list(dict.fromkeys(m for s in splits.values() for m in s["scoreboard"]["metrics"]))
    height = 0.55 + 0.17 * max(len(s["methods"]) for s in splits.values())
    figure, axes = plt.subplots(
        len(splits), len(shown), figsize=(3.2 * len(shown), height * len(splits)), squeeze=False
    )
    for row, (name, section) in enumerate(splits.items()):
        label = section.get("label") or name
        for column, metric_name in enumerate(shown):
            axis = axes[row, column]
            if metric_name not in section["scoreboard"]["metrics"]:
                axis.axis("off")
                continue
            _dot_panel(axis, section, metric_name, summary["baseline"], labelled=column == 0)
            direction = metric_spec(metric_name).direction
            axis.set_title(f"{label}: {metric_name} ({direction} is better)", fontsize=8.5)
    figure.tight_layout()
    return _png(figure)


def _zoomed_limits(
    names: list[str], means: np.ndarray, lows: np.ndarray, highs: np.ndarray
) -> tuple[float, float] | None:
    """x-limits around every method's CI; the noise floor counts only when it is on their scale."""
    others = np.array([name != NOISE_FLOOR for name in names])
    ends = np.concatenate([lows[others], highs[others], means[others]])
    ends = ends[np.isfinite(ends)]
    if ends.size == 0:
        return None
    low, high = float(ends.min()), float(ends.max())
    width = high - low
    if width <= 1e-9 * max(1.0, abs(high)):  # all equal: a window around the value
        width = abs(high) or 1.0
    floor = means[~others]
    if floor.size and np.isfinite(floor[0]) and low - width <= floor[0] <= high + width:
        low, high = min(low, float(lows[~others][0])), max(high, float(highs[~others][0]))
        width = high - low
    return low - 0.06 * width, high + 0.06 * width


def _clip_far_noise_floor(
    axis: Any,
    names: list[str],
    positions: np.ndarray,
    means: np.ndarray,
    lows: np.ndarray,
    highs: np.ndarray,
    limits: tuple[float, float],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    means, lows, highs = means.copy(), lows.copy(), highs.copy()
    for i, name in enumerate(names):
        if name != NOISE_FLOOR or not np.isfinite(means[i]) or limits[0] <= means[i] <= limits[1]:
            continue
        edge = limits[1] if means[i] > limits[1] else limits[0]
        arrow = "→" if means[i] > limits[1] else "←"
        axis.annotate(
            f"{arrow} {means[i]:.3g}",
            (edge, positions[i]),
            xytext=(-4 if edge == limits[1] else 4, 6),
            textcoords="offset points",
            ha="right" if edge == limits[1] else "left",
            fontsize=7,
            color=REFERENCE_COLOUR,
        )
        means[i] = lows[i] = highs[i] = edge
    return means, lows, highs


def selection_curves(section: dict[str, Any], label: str) -> bytes | None:
    """Training selection rate over steps per arm and seed; the kept fraction at prediction at right."""
    retrieval = section.get("retrieval") or {}
    if not retrieval:
        return None
    colours = arm_colours(section)
    figure, axis = plt.subplots(figsize=(7.0, 2.8))
    last_step = 1
    for arm, entry in retrieval.items():
        for k, curve in enumerate(entry["training"].values()):
            axis.plot(
                curve["step"],
                np.maximum(np.asarray(curve["selection_rate"], dtype=np.float64), RATE_FLOOR),
                color=colours.get(arm),
                lw=1.2,
                alpha=0.85,
                label=f"{arm} (training)" if k == 0 else None,
            )
            last_step = max([last_step, *curve["step"]])
    for arm, entry in retrieval.items():
        if entry.get("kept_fraction") is not None:
            axis.plot(
                last_step * 1.04,
                max(entry["kept_fraction"], RATE_FLOOR),
                marker="D",
                color=colours.get(arm),
                linestyle="none",
                markersize=7,
                label=f"{arm} (kept at prediction)",
            )
    collapsed = f"{COLLAPSED_SELECTION:.0%}: collapsed"
    axis.axhline(COLLAPSED_SELECTION, color="#bb0000", lw=0.8, ls=":", label=collapsed)
    # Log scale: a collapsed selector (rates of 1e-3) must look different from a sparse one (5 %).
    axis.set_yscale("log")
    axis.set_ylim(RATE_FLOOR * 0.7, 1.4)
    axis.set_xlabel("training step", fontsize=8)
    axis.set_ylabel(f"share kept (log; 0 drawn at {RATE_FLOOR:g})", fontsize=8)
    axis.tick_params(labelsize=7)
    axis.set_title(f"{label}: selection rate in training (lines) and at prediction (diamonds)", fontsize=9)
    axis.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    figure.tight_layout()
    return _png(figure)


def all_figures(summary: dict[str, Any]) -> dict[str, bytes]:
    """name → PNG bytes for every figure the summary has data for (names ``<kind>_<split>``)."""
    drawn: dict[str, bytes | None] = {"headline": headline_dots(summary)}
    for split, section in summary["splits"].items():
        label = section.get("label") or split
        drawn[f"metrics_{split}"] = metric_dots(section, label, summary["baseline"])
        drawn[f"selection_{split}"] = selection_curves(section, label)
    return {name: png for name, png in drawn.items() if png is not None}
