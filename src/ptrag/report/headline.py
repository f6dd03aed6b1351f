"""Plain words for the report: one sentence per arm and split (effects in each metric's own units), the
seed and collapse warnings, the noise-floor note."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ptrag.config.arms import BASELINE_ARM
from ptrag.evaluation.metric_registry import metric
from ptrag.evaluation.references import REFERENCE_REGISTRY
from ptrag.report.comparisons import NOISE_FLOOR, SIGNIFICANCE, improvement
from ptrag.report.numbers import fmt, signed
from ptrag.retrieval import COLLAPSED_SELECTION

__all__ = [
    "arm_sentence",
    "collapse_warnings",
    "component_sentence",
    "display",
    "method_note",
    "noise_floor_notes",
    "p_text",
    "seed_warnings",
    "split_title",
]

MIN_SEEDS = 3
OUTCOME_ORDER = ("better", "worse", "no different")
CONNECTIVE = {"better": "better than", "worse": "worse than", "no different": "no different from"}


def p_text(value: float | None) -> str:
    """A p-value as the report writes it: "p < 0.001", "p = 0.021" or "p n/a"."""
    if value is None:
        return "p n/a"
    return "p < 0.001" if value < 0.001 else f"p = {value:.2g}"


def display(name: str) -> str:
    """How sentences name a method ("ST" for the set transformer baseline)."""
    return "ST" if name == BASELINE_ARM else name


def split_title(label: str) -> str:
    """ "few-shot" → "Few-shot split"."""
    return f"{label[:1].upper()}{label[1:]} split"


def _mean(methods: Mapping[str, Mapping[str, Any]], name: str, metric_name: str) -> float | None:
    entry = (methods.get(name) or {}).get("metrics", {}).get(metric_name) or {}
    return entry.get("mean")


def _effect(row: Mapping[str, Any], methods: Mapping[str, Mapping[str, Any]], named: bool) -> str:
    """The effect in the metric's own units: both means and their difference; when the method is
    better and the noise floor beats the comparator, the share of that gap it closes."""
    name, other = row["metric"], row["baseline"]
    value, base = _mean(methods, row["arm"], name), _mean(methods, other, name)
    text = f"{fmt(value)} vs {f'{display(other)} ' if named else ''}{fmt(base)}"
    if value is not None and base is not None:
        text += f", {signed(value - base)}"
        floor = _mean(methods, NOISE_FLOOR, name)
        gain = float(improvement(metric(name), value, base))
        if row["outcome"] == "better" and floor is not None and gain > 0:
            gap = float(improvement(metric(name), floor, base))
            if gap > 0:
                text += f", {100 * gain / gap:.0f}% of the gap between {display(other)} and the noise floor"
        # The verdict follows the paired test (more groups one way); say so when the means disagree.
        if row["outcome"] in ("better", "worse") and gain != 0 and (gain > 0) != (row["outcome"] == "better"):
            majority = row["wins"] if row["outcome"] == "better" else row["losses"]
            on_average = "worse" if gain < 0 else "better"
            text += (
                f"; {row['outcome']} in {majority} of {row['n_pairs']} groups, though {on_average} on average"
            )
    return f"{text}; {p_text(row['p_value'])}"


def _clauses(
    rows: Sequence[Mapping[str, Any]], target: str, methods: Mapping[str, Mapping[str, Any]], named: bool
) -> list[str]:
    """One clause per outcome: "better than ST on w1 (…) and energy_gene (…)"."""
    clauses = []
    for result in OUTCOME_ORDER:
        items = [
            f"{row['metric']} ({_effect(row, methods, named)})" for row in rows if row["outcome"] == result
        ]
        if items:
            listed = items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]
            clauses.append(f"{CONNECTIVE[result]} {target} on {listed}")
    return clauses


def selector_kept(entry: Mapping[str, Any] | None) -> str:
    """ "its selector kept 0% of candidates at prediction" for a collapsed selector, else ""."""
    if not entry or not entry.get("collapsed"):
        return ""
    return f"its selector kept {100 * float(entry['kept_fraction']):.2g}% of candidates at prediction"


def arm_sentence(
    arm: str,
    tests: Sequence[Mapping[str, Any]],
    best_reference: Mapping[str, Mapping[str, Any]],
    baseline: str,
    metrics: Sequence[str],
    methods: Mapping[str, Mapping[str, Any]],
    retrieval: Mapping[str, Any] | None = None,
) -> str:
    """One sentence: the arm against the baseline and against the best simple reference per metric,
    effects in each metric's units; ``retrieval`` (the arm's entry of the summary's ``retrieval``)
    adds that a collapsed selector makes the difference from the baseline not retrieval's."""
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
    clauses = _clauses(versus_baseline, display(baseline), methods, named=False)
    kept = selector_kept(retrieval) if arm != baseline else ""
    inert = ""
    differing = len({r["outcome"] for r in versus_baseline} - {"no different"})  # its first clauses
    if kept and differing:
        clauses[differing - 1] += f", but {kept}, so its difference from {display(baseline)} is not retrieval"
    elif kept:
        inert = f" {kept[:1].upper()}{kept[1:]}: its retrieval is inert."
    clauses += _clauses(versus_reference, "the best simple reference", methods, named=True)
    if not clauses:
        return f"{arm}: no paired comparison could be made.{inert}"
    return f"{display(arm)} is " + "; ".join(clauses) + "." + inert


def component_sentence(
    ablation: str,
    tests: Sequence[Mapping[str, Any]],
    metrics: Sequence[str],
    methods: Mapping[str, Mapping[str, Any]],
) -> str | None:
    """One sentence: what the component an ablation removes adds (the full arm vs the ablation)."""
    rows = [r for m in metrics for r in tests if r["baseline"] == ablation and r["metric"] == m]
    if not rows:
        return None
    clauses = _clauses(rows, ablation, methods, named=False)
    return f"{rows[0]['component']}: {display(rows[0]['arm'])} is " + "; ".join(clauses) + "."


def method_note(n_seeds: int, baseline: str) -> str:
    seeds = f"{n_seeds} seed{'s' if n_seeds != 1 else ''}"
    return (
        "Paired over each split's test perturbations (two-sided Wilcoxon signed-rank test): 'better' or "
        f"'worse' means p < {SIGNIFICANCE:g}, otherwise 'no different'. An arm's score on a perturbation "
        f"is its mean over {seeds}. Effects are in each metric's own units: the two means over test "
        "perturbations and their difference; when a method is better and the noise floor (real cells "
        f"against real cells) beats what it is compared with ({display(baseline)} or a reference), the "
        "share of that gap it closes. The best simple reference is the one with the best mean on each "
        "metric."
    )


def seed_warnings(n_seeds: int) -> list[str]:
    if n_seeds >= MIN_SEEDS:
        return []
    return [
        f"Only {n_seeds} seed{'s' if n_seeds != 1 else ''}: one seed is not enough. Another training run "
        "of the same arm can score differently, and these tests cannot see that variation; rerun with "
        f"--seeds {MIN_SEEDS} before drawing conclusions."
    ]


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
