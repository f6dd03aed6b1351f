"""The benchmark summary: one JSON-ready dict holding every number the report shows.

Schema (``schema_version`` 5; 4 had no ``gene_spread``)::

    {
      "schema_version": 5,
      "title": str,
      "baseline": "st",                       # the arm every other arm is compared with
      "n_seeds": int,
      "significance": 0.05,                   # Wilcoxon p threshold of "better"/"worse"
      "metrics": [metric, ...],               # metrics shown, registry order
      "headline_metrics": [metric, ...],      # the scoreboard's columns and the metrics of the
                                              # headline sentences: the first `verdict` metric
                                              # (registry) of each family
      "metric_info": {metric: {"family", "direction", "description"}},
      "warnings": [str],                      # fewer than 3 seeds; a collapsed selection
      "headline": [{"split", "arm", "sentence"}],  # an ablation's sentence: what its component adds
      "splits": {                             # one section per split, in run order
        split: {
          "label": str, "description": str,   # e.g. "few-shot", what is held out
          "info": {...},                      # split file, test groups and cells
          "methods": {name: {"kind": "arm" | "reference" | "diagnostic", "note": str,
                             "metrics": {metric: {"mean", "median", "std", "ci_low", "ci_high",
                                                  "n", "nan_count"}}}},
          "per_perturbation": [{"method", "cell_type", "perturbation", metric: value, ...}],
          "best_reference": {metric: {"name", "mean"}},  # best simple reference by mean
          "paired_tests": [{"arm", "baseline", "comparator_kind", "metric", "n_pairs",
                            "median_difference", "mean_difference", "wins", "losses", "ties",
                            "statistic", "p_value", "mean_improvement", "outcome"}],
          "component_tests": [...],           # as paired_tests: each full arm vs its ablation,
                                              # plus "component" (ptrag.config.arms)
          "own_mean_tests": [...],            # as paired_tests: each arm vs <arm>_mean_on_controls
          "noise_floor_notes": [str],
          "gene_spread": {method: {           # per-gene SD, predicted / real (ptrag.evaluation.spread)
              "quantiles": [0.1, 0.5, 0.9], "all": [q, ...], "moved": [q, ...], "other": [q, ...],
              "share_off_by_10pct": float, "n_genes": int, "n_conditions": int}},
          "scoreboard": {"metrics": [metric], "rows": [{"method", "group", "inert", "cells"}]},
                                              # every method vs the baseline and the best simple
                                              # reference (ptrag.report.scoreboard)
          "retrieval": {arm: {                # arms with a selector only
              "training": {"seed<k>": {"step": [int], "selection_rate": [float]}},
              "training_final_rate": float | null,
              "prediction": {cell_type: {"n_sets", "n_candidates", "selection_rate",
                                         "kept_fraction", "kept_per_set"}},
              "selection_rate": float, "kept_fraction": float, "collapsed": bool,
              "same_perturbation": {"n_same", "kept_fraction_same", "n_other",
                                    "kept_fraction_other"} | null,
              "examples": [{"cell_type", "perturbation", "candidate", "cosine",
                            "keep_probability", "keep_weight", <extra columns>}],
              "examples_kept": bool, "extra_columns": [str]}}
        }
      },
      "info": {...}                           # free-form run facts (data, config, timings)
    }

``paired_tests``: differences are arm − comparator (``baseline`` names the comparator: the baseline
arm or a simple reference); ``mean_improvement`` is positive when the arm is better, in the
metric's own units. CIs are percentile bootstrap 95% intervals of the mean over test perturbations. NaN is
written as ``null``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ptrag.config.arms import BASELINE_ARM
from ptrag.evaluation.metric_registry import METRICS, metric, metrics_where
from ptrag.evaluation.references import REFERENCE_REGISTRY
from ptrag.evaluation.stats import bootstrap_ci
from ptrag.report.comparisons import (
    SIGNIFICANCE,
    best_references,
    component_comparisons,
    own_mean_comparisons,
    paired_comparisons,
)
from ptrag.report.headline import (
    arm_sentence,
    collapse_warnings,
    component_sentence,
    noise_floor_notes,
    seed_warnings,
)
from ptrag.report.retrieval import retrieval_section
from ptrag.report.scoreboard import scoreboard

__all__ = ["SCHEMA_VERSION", "SplitResults", "build_summary"]

SCHEMA_VERSION = 5


@dataclass
class SplitResults:
    """What one split contributes: scores, and per arm its retrieval records and training logs.

    ``results`` is long: column ``method``, ``cell_type``, ``perturbation`` and one per metric, arms
    already averaged over seeds. ``kinds`` maps each method to "arm" or "reference" in display order.
    """

    results: pd.DataFrame
    kinds: Mapping[str, str]
    label: str = ""
    description: str = ""
    retrieval: Mapping[str, pd.DataFrame] = field(default_factory=dict)
    training: Mapping[str, pd.DataFrame] = field(default_factory=dict)
    info: Mapping[str, Any] = field(default_factory=dict)
    # method → ptrag.evaluation.spread.spread_summary of its per-gene spread
    spread: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


def _clean(value: Any) -> Any:
    """JSON-safe scalars: numpy → Python, NaN/inf → None."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        number = float(value)
        return number if math.isfinite(number) else None
    return value


def _note(reference: str) -> str:
    entry = REFERENCE_REGISTRY.get(reference)
    return entry.note if entry is not None else ""


def _metric_info(name: str) -> dict[str, str]:
    spec = metric(name)
    return {"family": spec.family, "direction": spec.direction, "description": spec.description}


def _metric_summary(values: pd.Series, n_boot: int, seed: int) -> dict[str, Any]:
    data = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64)
    finite = data[~np.isnan(data)]
    low, high = bootstrap_ci(finite, n_boot=n_boot, seed=seed)
    return {
        "mean": float(finite.mean()) if finite.size else float("nan"),
        "median": float(np.median(finite)) if finite.size else float("nan"),
        "std": float(finite.std(ddof=1)) if finite.size > 1 else float("nan"),
        "ci_low": low,
        "ci_high": high,
        "n": int(finite.size),
        "nan_count": int(data.size - finite.size),
    }


def sentence_metrics(shown: Sequence[str]) -> list[str]:
    """The headline sentences' metrics: the first ``verdict`` metric of each family, registry order."""
    first: dict[str, str] = {}
    for name in metrics_where("verdict"):
        if name in shown:
            first.setdefault(metric(name).family, name)
    return list(first.values())


def split_section(
    split: SplitResults,
    baseline: str,
    shown: Sequence[str],
    headline: Sequence[str] = (),
    n_boot: int = 2000,
    seed: int = 0,
) -> dict[str, Any]:
    """One split's entry of ``summary["splits"]`` (before JSON cleaning); ``headline``: the
    scoreboard's metrics. A metric some split lacks is NaN in this one."""
    missing = [m for m in shown if m not in split.results.columns]
    results = split.results.reindex(columns=[*split.results.columns, *missing])
    methods = {
        name: {
            "kind": kind,
            "note": _note(name) if kind == "reference" else "",
            "metrics": {
                m: _metric_summary(results.loc[results["method"] == name, m], n_boot, seed) for m in shown
            },
        }
        for name, kind in split.kinds.items()
    }
    arms = [name for name, kind in split.kinds.items() if kind == "arm"]
    has_baseline = baseline in set(results["method"])
    clean_methods = _clean(methods)
    best = best_references(clean_methods, split.kinds, shown)
    retrieval = retrieval_section(split.retrieval, split.training, arms)
    return {
        "label": split.label,
        "description": split.description,
        "info": dict(split.info),
        "methods": methods,
        "per_perturbation": results[["method", "cell_type", "perturbation", *shown]].to_dict(
            orient="records"
        ),
        "best_reference": best,
        "paired_tests": paired_comparisons(results, split.kinds, baseline, shown) if has_baseline else [],
        "component_tests": component_comparisons(results, split.kinds, shown),
        "own_mean_tests": own_mean_comparisons(results, split.kinds, shown),
        "noise_floor_notes": noise_floor_notes(clean_methods, shown),
        "retrieval": retrieval,
        "gene_spread": {name: dict(entry) for name, entry in split.spread.items()},
        "scoreboard": scoreboard(results, split.kinds, baseline, headline, clean_methods, best, retrieval),
    }


def build_summary(
    splits: Mapping[str, SplitResults],
    baseline: str = BASELINE_ARM,
    n_seeds: int = 1,
    metrics: Sequence[str] | None = None,
    title: str = "ptrag benchmark",
    info: Mapping[str, Any] | None = None,
    n_boot: int = 2000,
    seed: int = 0,
) -> dict[str, Any]:
    """Assemble the summary (schema above) from each split's results, keyed by split name."""
    present = set().union(*(set(s.results.columns) for s in splits.values())) if splits else set()
    shown = [m for m in (metrics or METRICS) if m in present]
    headline_metrics = sentence_metrics(shown)
    sections = {
        name: _clean(split_section(s, baseline, shown, headline_metrics, n_boot, seed))
        for name, s in splits.items()
    }
    headline = []
    for name, section in sections.items():
        methods = section["methods"]
        arms = [m for m, entry in methods.items() if entry["kind"] == "arm"]
        for arm in arms:
            # An ablation beside its full arm says what the removed component adds; any other arm
            # is set against the baseline and the best simple reference.
            sentence = component_sentence(arm, section["component_tests"], headline_metrics, methods)
            if sentence is None:
                sentence = arm_sentence(
                    arm,
                    section["paired_tests"],
                    section["best_reference"],
                    baseline,
                    headline_metrics,
                    methods,
                    section["retrieval"].get(arm),
                )
            headline.append({"split": name, "arm": arm, "sentence": sentence})
    summary = {
        "schema_version": SCHEMA_VERSION,
        "title": title,
        "baseline": baseline,
        "n_seeds": int(n_seeds),
        "significance": SIGNIFICANCE,
        "metrics": shown,
        "headline_metrics": headline_metrics,
        "metric_info": {m: _metric_info(m) for m in shown},
        "warnings": seed_warnings(n_seeds) + collapse_warnings(sections),
        "headline": headline,
        "splits": sections,
        "info": dict(info or {}),
    }
    return _clean(summary)
