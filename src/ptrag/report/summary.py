"""The benchmark summary: one JSON-ready dict holding every number the report shows.

Schema (``schema_version`` 2)::

    {
      "schema_version": 2,
      "title": str,
      "baseline": "st",                       # arm every other arm is tested against
      "metrics": [metric, ...],               # metrics shown, in order
      "metric_info": {metric: {"family", "direction", "description"}},  # from the metric registry;
                                              # direction: "lower", "higher" or "closer to 1"
      "methods": {                            # arms and references, in display order
        name: {
          "kind": "arm" | "reference",
          "note": str,                        # the reference registry's note (e.g. the noise
                                              # floor's split-half caveat); "" for arms
          "metrics": {metric: {"mean", "median", "std", "ci_low", "ci_high", "n", "nan_count"}}
        }
      },
      "per_perturbation": [{"method", "cell_type", "perturbation", metric: value, ...}],
      "paired_tests": [{"arm", "baseline", "metric", "n_pairs", "median_difference",
                        "mean_difference", "wins", "losses", "ties", "statistic", "p_value"}],
      "selection": {                          # from retrieval records; {} when none were given
        cell_type: {"n_sets", "selection_rate_mean", "selection_rate_median", "kept_mean",
                    "kept_median", "selection_rate": [per set], "kept_count": [per set]}
      },
      "neighbours": [{"cell_type", "perturbation",
                      "candidates": [{"candidate", "cosine", "keep_weight", "kept"}]}],
      "info": {...}                           # free-form run facts (data, steps, seeds, timings)
    }

CIs are percentile bootstrap 95% intervals of the mean over perturbations
(:func:`ptrag.evaluation.bootstrap_ci`). NaN is written as ``null``. A retrieval set is one
(cell type, perturbation[, ``set_id``]) group of candidate rows; its selection rate is the mean
``keep_weight`` over its candidates and its kept count the number of rows with ``kept`` true.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ptrag.evaluation.metric_registry import METRICS, metric
from ptrag.evaluation.references import REFERENCE_REGISTRY
from ptrag.evaluation.stats import bootstrap_ci, paired_tests

SCHEMA_VERSION = 2
RETRIEVAL_COLUMNS: tuple[str, ...] = (
    "cell_type",
    "perturbation",
    "candidate",
    "cosine",
    "keep_weight",
    "kept",
)
SET_COLUMNS: tuple[str, ...] = ("set_id", "set")  # optional: several sets per query


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


def selection_stats(retrieval: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Per cell type: per-set selection rates and kept counts, with their mean and median."""
    missing = [c for c in RETRIEVAL_COLUMNS if c not in retrieval.columns]
    if missing:
        raise ValueError(f"retrieval records lack columns {missing}; expected {list(RETRIEVAL_COLUMNS)}")
    keys = ["cell_type", "perturbation", *[c for c in SET_COLUMNS if c in retrieval.columns][:1]]
    per_set = retrieval.groupby(keys, observed=True, sort=True).agg(
        selection_rate=("keep_weight", "mean"), kept_count=("kept", "sum")
    )
    out: dict[str, dict[str, Any]] = {}
    for cell_type, group in per_set.groupby(level="cell_type", observed=True):
        rates = group["selection_rate"].to_numpy(dtype=np.float64)
        kept = group["kept_count"].to_numpy(dtype=np.float64)
        out[str(cell_type)] = {
            "n_sets": len(group),
            "selection_rate_mean": float(rates.mean()),
            "selection_rate_median": float(np.median(rates)),
            "kept_mean": float(kept.mean()),
            "kept_median": float(np.median(kept)),
            "selection_rate": rates.tolist(),
            "kept_count": kept.astype(int).tolist(),
        }
    return out


def neighbour_examples(
    retrieval: pd.DataFrame, perturbations: Sequence[tuple[str, str]] | None = None, n_examples: int = 3
) -> list[dict[str, Any]]:
    """Retrieved candidates (by cosine, descending) of a few (cell type, perturbation) queries.

    Without an explicit list, takes the ``n_examples`` queries with the most kept candidates, so
    that the table shows selection doing something. With several sets per query, the first is shown.
    """
    if perturbations is None:
        kept = retrieval.groupby(["cell_type", "perturbation"], observed=True)["kept"].sum()
        ranked = kept.reset_index().sort_values(
            ["kept", "cell_type", "perturbation"], ascending=[False, True, True]
        )
        perturbations = list(ranked[["cell_type", "perturbation"]].itertuples(index=False, name=None))[
            :n_examples
        ]
    examples = []
    for cell_type, perturbation in perturbations:
        rows = retrieval[(retrieval["cell_type"] == cell_type) & (retrieval["perturbation"] == perturbation)]
        set_column = next((c for c in SET_COLUMNS if c in rows.columns), None)
        if set_column is not None and len(rows):
            rows = rows[rows[set_column] == rows[set_column].iloc[0]]
        rows = rows.sort_values("cosine", ascending=False)
        examples.append(
            {
                "cell_type": str(cell_type),
                "perturbation": str(perturbation),
                "candidates": [
                    {
                        "candidate": str(r.candidate),
                        "cosine": float(r.cosine),
                        "keep_weight": float(r.keep_weight),
                        "kept": bool(r.kept),
                    }
                    for r in rows.itertuples(index=False)
                ],
            }
        )
    return examples


def build_summary(
    results: pd.DataFrame,
    kinds: Mapping[str, str],
    baseline: str = "st",
    retrieval: pd.DataFrame | None = None,
    neighbour_queries: Sequence[tuple[str, str]] | None = None,
    metrics: Sequence[str] | None = None,
    title: str = "ptrag benchmark",
    info: Mapping[str, Any] | None = None,
    n_boot: int = 2000,
    seed: int = 0,
) -> dict[str, Any]:
    """Assemble the summary from a long results table (column ``method`` + per-perturbation metrics).

    ``kinds`` maps each method to "arm" or "reference" and fixes the display order.
    """
    shown = [m for m in (metrics or METRICS) if m in results.columns]
    methods: dict[str, Any] = {}
    for name, kind in kinds.items():
        rows = results[results["method"] == name]
        methods[name] = {
            "kind": kind,
            "note": _note(name) if kind == "reference" else "",
            "metrics": {m: _metric_summary(rows[m], n_boot, seed) for m in shown},
        }
    arms = results[results["method"].isin([m for m, k in kinds.items() if k == "arm"])]
    tests = (
        paired_tests(arms, baseline=baseline, metrics=shown, arm_col="method")
        if baseline in set(arms["method"])
        else pd.DataFrame()
    )
    columns = ["method", "cell_type", "perturbation", *shown]
    summary = {
        "schema_version": SCHEMA_VERSION,
        "title": title,
        "baseline": baseline,
        "metrics": shown,
        "metric_info": {m: _metric_info(m) for m in shown},
        "methods": methods,
        "per_perturbation": results[columns].to_dict(orient="records"),
        "paired_tests": tests.to_dict(orient="records"),
        "selection": selection_stats(retrieval) if retrieval is not None and len(retrieval) else {},
        "neighbours": (
            neighbour_examples(retrieval, neighbour_queries)
            if retrieval is not None and len(retrieval)
            else []
        ),
        "info": dict(info or {}),
    }
    return _clean(summary)
