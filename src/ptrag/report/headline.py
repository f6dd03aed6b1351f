"""Plain words for the report: one sentence per arm and split, the seed warning, the noise-floor note."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ptrag.evaluation.metric_registry import metric
from ptrag.evaluation.references import REFERENCE_REGISTRY
from ptrag.report.comparisons import CONTROL, NOISE_FLOOR, SIGNIFICANCE, improvement
from ptrag.retrieval import COLLAPSED_SELECTION

MIN_SEEDS = 3
OUTCOME_ORDER = ("better", "worse", "no different")
CONNECTIVE = {"better": "better than", "worse": "worse than", "no different": "no different from"}


def _p(value: float | None) -> str:
    if value is None:
        return "p n/a"
    return "p < 0.001" if value < 0.001 else f"p = {value:.2g}"


def _size(fraction: float) -> str:
    size = abs(fraction)
    return f"{size:.1f}×" if size >= 0.995 else f"{100 * size:.0f}%"


def display(name: str) -> str:
    """How sentences name a method ("ST" for the set transformer baseline)."""
    return "ST" if name == "st" else name


def split_title(label: str) -> str:
    """ "few-shot" → "Few-shot split"."""
    return f"{label[:1].upper()}{label[1:]} split"


def _effect(row: Mapping[str, Any], baseline: str, versus_baseline: bool, with_unit: bool) -> str:
    """The effect in units of the baseline's gain over control, in words (the unit named once)."""
    fraction = row.get("relative_to_baseline_gain")
    if fraction is None:
        gain = row.get("mean_improvement")
        raw = "n/a" if gain is None else f"{gain:+.3g}"
        return f"mean gain {raw}; {display(baseline)} does not beat control on it"
    unit = f" of {display(baseline)}'s gain over control" if with_unit else ""
    if fraction >= 0.995:
        unit = f" {display(baseline)}'s gain over control" if with_unit else ""
    size = _size(fraction)
    if versus_baseline:
        if row["outcome"] == "no different":
            return f"{'+' if fraction >= 0 else '−'}{size}{unit}"
        return f"{'adds' if fraction > 0 else 'gives back'} {size}{unit}"
    return f"{'ahead' if fraction >= 0 else 'behind'} by {size}{unit}"


def _clauses(
    rows: Sequence[Mapping[str, Any]], target: str, baseline: str, versus_baseline: bool
) -> list[str]:
    clauses = []
    for result in OUTCOME_ORDER:
        items = []
        for row in (r for r in rows if r["outcome"] == result):
            who = "" if versus_baseline else f"{row['baseline']}, "
            effect = _effect(row, baseline, versus_baseline, with_unit=not items)
            items.append(f"{row['metric']} ({who}{effect}; {_p(row['p_value'])})")
        if items:
            listed = items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]
            clauses.append(f"{CONNECTIVE[result]} {target} on {listed}")
    return clauses


def arm_sentence(
    arm: str,
    tests: Sequence[Mapping[str, Any]],
    best_reference: Mapping[str, Mapping[str, Any]],
    baseline: str,
    metrics: Sequence[str],
) -> str:
    """One sentence: the arm against the baseline and against the best simple reference per metric."""
    versus_baseline = [
        r
        for m in metrics
        for r in tests
        if r["arm"] == arm and r["baseline"] == baseline and r["metric"] == m
    ]
    versus_reference = [
        r
        for m in metrics
        if m in best_reference
        for r in tests
        if r["arm"] == arm and r["baseline"] == best_reference[m]["name"] and r["metric"] == m
    ]
    clauses = _clauses(versus_baseline, display(baseline), baseline, True)
    clauses += _clauses(versus_reference, "the best simple reference", baseline, False)
    if not clauses:
        return f"{arm}: no paired comparison could be made."
    return f"{display(arm)} is " + "; ".join(clauses) + "."


def component_sentence(
    ablation: str, tests: Sequence[Mapping[str, Any]], baseline: str, metrics: Sequence[str]
) -> str | None:
    """One sentence: what the component an ablation removes adds (the full arm vs the ablation)."""
    rows = [r for m in metrics for r in tests if r["baseline"] == ablation and r["metric"] == m]
    if not rows:
        return None
    clauses = _clauses(rows, ablation, baseline, False)
    return f"{rows[0]['component']}: {display(rows[0]['arm'])} is " + "; ".join(clauses) + "."


def method_note(n_seeds: int, baseline: str) -> str:
    seeds = f"{n_seeds} seed{'s' if n_seeds != 1 else ''}"
    return (
        "Paired over each split's test perturbations (two-sided Wilcoxon signed-rank test): 'better' or "
        f"'worse' means p < {SIGNIFICANCE:g}, otherwise 'no different'. An arm's score on a perturbation "
        f"is its mean over {seeds}. Effects (%, ×) are shares of {display(baseline)}'s own mean gain over "
        "the control reference (control cells, no shift) on that metric. The best simple reference is "
        "the one with the best mean on each metric."
    )


def seed_warnings(n_seeds: int) -> list[str]:
    if n_seeds >= MIN_SEEDS:
        return []
    return [
        f"Only {n_seeds} seed{'s' if n_seeds != 1 else ''}: one seed is not enough. Another training run "
        "of the same arm can score differently, and these tests cannot see that variation; rerun with "
        f"--seeds {MIN_SEEDS} before drawing conclusions."
    ]


def unit_notes(sections: Mapping[str, Mapping[str, Any]], baseline: str, metrics: Sequence[str]) -> list[str]:
    """Where the baseline does not clearly beat control, shares of its gain are large and unstable."""
    notes = []
    for name, section in sections.items():
        weak = [
            f"{row['metric']} ({_p(row['p_value'])})"
            for m in metrics
            for row in section["paired_tests"]
            if row["arm"] == baseline
            and row["baseline"] == CONTROL
            and row["metric"] == m
            and row["outcome"] != "better"
        ]
        if weak:
            notes.append(
                f"{split_title(section.get('label') or name)}: {display(baseline)} does not clearly beat "
                f"control on {', '.join(weak)}, so effects given as shares of its gain there are large and "
                "unstable."
            )
    return notes


def collapse_warnings(sections: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """One line naming every (arm, split) whose selector kept under 1 % of candidates at prediction."""
    collapsed: dict[str, list[str]] = {}
    for name, section in sections.items():
        for arm, entry in (section.get("retrieval") or {}).items():
            if entry.get("collapsed"):
                where = f"{section.get('label') or name} {100 * entry['kept_fraction']:.2g}%"
                collapsed.setdefault(display(arm), []).append(where)
    if not collapsed:
        return []
    listed = "; ".join(f"{arm} ({', '.join(where)})" for arm, where in collapsed.items())
    return [
        f"Selection has collapsed (under {COLLAPSED_SELECTION:.0%} of retrieved candidates kept at "
        f"prediction), so retrieval adds next to nothing to these predictions: {listed}."
    ]


def noise_floor_notes(methods: Mapping[str, Mapping[str, Any]], metrics: Sequence[str]) -> list[str]:
    """What the noise-floor row means, with the facts of this table that confuse readers."""
    if NOISE_FLOOR not in methods:
        return []
    notes = [f"{NOISE_FLOOR}: {REFERENCE_REGISTRY[NOISE_FLOOR].note}."]
    floor = methods[NOISE_FLOOR]["metrics"]
    arms = [name for name, entry in methods.items() if entry["kind"] == "arm"]
    worse, negative = [], []
    for name in metrics:
        value = floor.get(name, {}).get("mean")
        if value is None:
            continue
        spec = metric(name)
        arm_values = [methods[a]["metrics"][name]["mean"] for a in arms]
        arm_values = [v for v in arm_values if v is not None]
        if arm_values and any(float(improvement(spec, v, value)) > 0 for v in arm_values):
            worse.append(name)
        if not spec.higher_is_better and spec.best_at is None and value < 0:
            negative.append(f"{name} ({value:.3g})")
    if worse:
        notes.append(
            f"Here the noise floor scores worse than an arm on {', '.join(worse)}: it compares n/2 real "
            "cells with the other n/2, and n/2 cells give noisier distributions and means than n, so a "
            "model scored on all n cells can beat it. It is not a lower bound for these metrics."
        )
    if negative:
        notes.append(
            f"Its {', '.join(negative)} is negative: that estimator is unbiased, so when both halves come "
            "from the same distribution it scatters around 0 and can fall below it."
        )
    return notes
