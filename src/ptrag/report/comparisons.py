"""Paired comparisons of every arm against the baseline arm and against every simple reference.

Pairs are (cell type, perturbation) test groups; an arm's value is its mean over seeds (the caller
averages), a reference's is its single score. For every (arm, comparator, metric) the row holds
scipy's two-sided Wilcoxon signed-rank test (:func:`ptrag.evaluation.stats.paired_tests`), wins and
losses in the metric's direction, and the mean per-group improvement of the arm over the comparator
in the metric's own units (positive = the arm is better).

The scoreboard (:func:`scoreboard_tests`) runs the same tests for every method of the table, arms,
references and diagnostic rows alike, against the baseline and against each metric's best simple
reference.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ptrag.evaluation.metric_registry import Metric, metric
from ptrag.evaluation.references import REFERENCE_REGISTRY
from ptrag.evaluation.stats import paired_tests

__all__ = [
    "KEYS",
    "NOISE_FLOOR",
    "SIGNIFICANCE",
    "best_references",
    "component_comparisons",
    "improvement",
    "mean_improvement",
    "outcome",
    "own_mean_comparisons",
    "paired_comparisons",
    "scoreboard_tests",
    "simple_references",
    "wide",
]

KEYS = ["cell_type", "perturbation"]
SIGNIFICANCE = 0.05  # two-sided Wilcoxon p below this: "better" or "worse"; else "no different"
NOISE_FLOOR = "noise_floor"  # real cells scored against real cells: a yardstick, not a predictor
assert NOISE_FLOOR in REFERENCE_REGISTRY, f"reference {NOISE_FLOOR!r} left the registry; update ptrag.report"


def simple_references(kinds: Mapping[str, str]) -> list[str]:
    """The references that predict from training data or controls (every one but the noise floor)."""
    return [name for name, kind in kinds.items() if kind == "reference" and name != NOISE_FLOOR]


def improvement(spec: Metric, value: Any, other: Any) -> Any:
    """How much ``value`` beats ``other`` in the metric's direction (positive = better), elementwise."""
    value, other = np.asarray(value, dtype=np.float64), np.asarray(other, dtype=np.float64)
    if spec.best_at is not None:
        return np.abs(other - spec.best_at) - np.abs(value - spec.best_at)
    return value - other if spec.higher_is_better else other - value


def wide(results: pd.DataFrame, metrics: Sequence[str]) -> pd.DataFrame:
    """Columns (metric, method), one row per test group: every pair lines up by index."""
    names = [m for m in metrics if m in results.columns]
    return results.groupby(["method", *KEYS], sort=False)[names].mean().unstack("method")


def mean_improvement(table: pd.DataFrame, method: str, comparator: str, name: str) -> float:
    """Mean over test groups (NaN pairs dropped) of ``method``'s improvement over ``comparator``;
    ``table`` is :func:`wide`'s."""
    if (name, method) not in table.columns or (name, comparator) not in table.columns:
        return float("nan")
    gain = improvement(metric(name), table[(name, method)].to_numpy(), table[(name, comparator)].to_numpy())
    gain = gain[~np.isnan(gain)]
    return float(gain.mean()) if gain.size else float("nan")


def outcome(p_value: float | None, wins: int, losses: int, mean_gain: float) -> str:
    """ "better", "worse" or "no different" (two-sided Wilcoxon at :data:`SIGNIFICANCE`)."""
    if p_value is None or not np.isfinite(p_value) or p_value >= SIGNIFICANCE:
        return "no different"
    if wins != losses:
        return "better" if wins > losses else "worse"
    return "better" if mean_gain > 0 else "worse"


def paired_comparisons(
    results: pd.DataFrame, kinds: Mapping[str, str], baseline: str, metrics: Sequence[str]
) -> list[dict[str, Any]]:
    """Every arm against ``baseline`` and against every simple reference, per metric.

    Rows: the columns of :func:`ptrag.evaluation.stats.paired_tests` (``baseline`` names the
    comparator) plus ``comparator_kind`` ("arm" or "reference"), ``mean_improvement`` (arm over
    comparator, positive = arm better) and ``outcome``.
    """
    present = set(results["method"])
    arms = [name for name, kind in kinds.items() if kind == "arm" and name in present]
    comparators = [c for c in [baseline, *simple_references(kinds)] if c in present]
    table = wide(results, metrics)
    rows: list[dict[str, Any]] = []
    for comparator in comparators:
        compared = [a for a in arms if a != comparator]
        if not compared:
            continue
        kind = kinds.get(comparator, "arm")
        rows += _tests(results, [*compared, comparator], comparator, kind, metrics, table)
    return rows


def _tests(
    results: pd.DataFrame,
    methods: Sequence[str],
    comparator: str,
    kind: str,
    metrics: Sequence[str],
    table: pd.DataFrame,
) -> list[dict[str, Any]]:
    """Paired tests of ``methods`` against ``comparator`` (of ``kind``), with effects and outcomes."""
    pairs = results[results["method"].isin(methods)]
    rows = paired_tests(pairs, baseline=comparator, metrics=metrics, arm_col="method").to_dict("records")
    for row in rows:
        gain = mean_improvement(table, row["arm"], comparator, row["metric"])
        p_value = None if pd.isna(row["p_value"]) else float(row["p_value"])
        row.update(
            comparator_kind=kind,
            mean_improvement=gain,
            outcome=outcome(p_value, int(row["wins"]), int(row["losses"]), gain),
        )
    return rows


def scoreboard_tests(
    results: pd.DataFrame, baseline: str, metrics: Sequence[str], best: Mapping[str, Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """Every method in ``results`` against ``baseline`` on every metric, and against the best simple
    reference of each metric (``best``, as :func:`best_references`). Rows as :func:`_tests`."""
    present = list(pd.unique(results["method"]))
    table = wide(results, metrics)
    rows: list[dict[str, Any]] = []
    comparators = {baseline: list(metrics)} if baseline in present else {}
    for name in metrics:
        reference = best.get(name, {}).get("name")
        if reference in present:
            comparators.setdefault(reference, []).append(name)
    for comparator, names in comparators.items():
        kind = "arm" if comparator == baseline else "reference"
        rows += _tests(results, present, comparator, kind, names, table)
    return rows


def component_comparisons(
    results: pd.DataFrame, kinds: Mapping[str, str], metrics: Sequence[str]
) -> list[dict[str, Any]]:
    """Every ablation arm present against the arm it ablates (both run): what the removed component
    adds. Rows as :func:`paired_comparisons` (``arm`` = the full arm, ``baseline`` = the ablation),
    plus ``component``."""
    from ptrag.config.arms import ARMS

    present = {name for name, kind in kinds.items() if kind == "arm"} & set(results["method"])
    table = wide(results, metrics)
    rows: list[dict[str, Any]] = []
    for ablation in sorted(present):
        arm = ARMS.get(ablation)
        if arm is None or arm.ablates not in present:
            continue
        tests = _tests(results, [arm.ablates, ablation], ablation, "ablation", metrics, table)
        rows += [{**row, "component": arm.component} for row in tests]
    return rows


def own_mean_comparisons(
    results: pd.DataFrame, kinds: Mapping[str, str], metrics: Sequence[str]
) -> list[dict[str, Any]]:
    """Every arm against its own diagnostic row ``<arm>_mean_on_controls`` (its predicted mean shift
    on real control cells): "worse" on a distributional metric means the generated cells cost
    accuracy that the arm's mean alone would have. Rows as :func:`paired_comparisons`."""
    from ptrag.evaluation.references import mean_on_controls_name

    present = set(results["method"])
    table = wide(results, metrics)
    rows: list[dict[str, Any]] = []
    for arm in [name for name, kind in kinds.items() if kind == "arm" and name in present]:
        own = mean_on_controls_name(arm)
        if own in present:
            rows += _tests(results, [arm, own], own, "diagnostic", metrics, table)
    return rows


def best_references(
    methods: Mapping[str, Mapping[str, Any]], kinds: Mapping[str, str], metrics: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """Per metric, the simple reference with the best mean over test groups: {"name", "mean"}."""
    best: dict[str, dict[str, Any]] = {}
    for name in metrics:
        spec = metric(name)
        scored = [
            (reference, methods[reference]["metrics"][name]["mean"])
            for reference in simple_references(kinds)
            if reference in methods and methods[reference]["metrics"].get(name, {}).get("mean") is not None
        ]
        scored = [(r, float(m)) for r, m in scored if np.isfinite(m)]
        if not scored:
            continue
        # The best is the one every other loses to: largest improvement over the first.
        reference, mean = max(scored, key=lambda item: float(improvement(spec, item[1], scored[0][1])))
        best[name] = {"name": reference, "mean": mean}
    return best
