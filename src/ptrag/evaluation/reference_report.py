"""Files and tables of ``ptrag evaluate``'s references: one results directory each, one comparison.

Layout under the evaluation directory (default ``PRED_DIR/eval``)::

    results.csv, agg_results.csv              the method (cell-eval names)
    comparison.csv                            mean of every metric: the method, then each reference
    references/<name>/results.csv             per reference, the same two files as the method
    references/<name>/agg_results.csv
    references/details.csv                    how each shift reference's shift was made (from
                                              references.npz): neighbours, ridge λ, fallbacks
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from ptrag.evaluation.core import EvaluationResult, write_results
from ptrag.evaluation.metric_registry import METRICS
from ptrag.evaluation.references import row_kind

__all__ = ["COMPARISON_FILE", "comparison_table", "write_reference_results"]

REFERENCES_DIR = "references"
COMPARISON_FILE = "comparison.csv"


def write_reference_results(
    references: Mapping[str, EvaluationResult], out_dir: str | Path, details: pd.DataFrame | None = None
) -> list[Path]:
    """Write ``out_dir/references/<name>/{results,agg_results}.csv`` (+ ``details.csv``); the paths."""
    from ptrag.io import atomic_write_text

    root = Path(out_dir) / REFERENCES_DIR
    paths: list[Path] = []
    for name, result in references.items():
        paths += write_results(result, root / name)
    if details is not None and len(details):
        atomic_write_text(root / "details.csv", details.to_csv(index=False))
        paths.append(root / "details.csv")
    return paths


def comparison_table(
    method: str,
    result: EvaluationResult,
    references: Mapping[str, EvaluationResult],
    metrics: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Mean over conditions of every metric: one row for the method, then one per reference.

    Columns: ``method``, ``kind`` ("method", "reference" or "diagnostic"), ``n_conditions`` and the
    metrics.
    """
    names = [m for m in (metrics or METRICS) if m in result.agg.columns]
    rows: list[dict[str, Any]] = []
    for name, kind, scored in [(method, "method", result)] + [
        (ref, row_kind(ref), res) for ref, res in references.items()
    ]:
        row: dict[str, Any] = {"method": name, "kind": kind, "n_conditions": len(scored.results)}
        for m in names:
            row[m] = float(scored.agg.loc["mean", m]) if m in scored.agg.columns else float("nan")
        rows.append(row)
    return pd.DataFrame(rows)
