"""The scoreboard: the report's first screen, one table per split.

Rows are the methods (arms, then the simple references, then diagnostic rows: the noise floor and any
method whose kind is neither "arm" nor "reference"); columns are the summary's headline metrics. A
cell holds the method's mean over test perturbations (arms: over seeds first) and two marks, from the
paired tests of :func:`ptrag.report.comparisons.scoreboard_tests`: against the baseline (ST) and
against the metric's best simple reference — better, no different or worse. Nothing here names a
method: the rows come from the split's kinds, the columns from the summary.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from ptrag.evaluation.metric_registry import metric
from ptrag.report.comparisons import SIGNIFICANCE, scoreboard_tests, simple_references
from ptrag.report.headline import display, p_text

__all__ = ["Board", "Cell", "Mark", "Row", "Scoreboards", "board", "legend", "scoreboard"]

MARK_TEXT = {"better": "+", "no different": "=", "worse": "−"}  # a minus sign
MARK_CLASS = {"better": "better", "no different": "same", "worse": "worse"}
NOT_COMPARED = "·"


def method_groups(kinds: Mapping[str, str]) -> dict[str, str]:
    """method → "arm", "reference" or "diagnostic", in scoreboard order (each group in ``kinds`` order)."""
    references = set(simple_references(kinds))
    group = {
        name: "arm" if kind == "arm" else "reference" if name in references else "diagnostic"
        for name, kind in kinds.items()
    }
    order = ("arm", "reference", "diagnostic")
    return {name: group[name] for rank in order for name in kinds if group[name] == rank}


def _mark(row: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if row is None or not row["n_pairs"]:
        return None
    p_value = None if pd.isna(row["p_value"]) else float(row["p_value"])
    return {"comparator": row["baseline"], "outcome": row["outcome"], "p_value": p_value}


def scoreboard(
    results: pd.DataFrame,
    kinds: Mapping[str, str],
    baseline: str,
    metrics: Sequence[str],
    methods: Mapping[str, Mapping[str, Any]],
    best: Mapping[str, Mapping[str, Any]],
    retrieval: Mapping[str, Mapping[str, Any]],
) -> dict[str, Any]:
    """One split's ``scoreboard`` entry of summary.json.

    ``{"metrics": [...], "rows": [{"method", "group", "inert", "cells": {metric: {"mean", "best",
    "vs_baseline", "vs_best_reference"}}}]}``: ``vs_*`` are ``{"comparator", "outcome", "p_value"}``
    or null (the method is the comparator, or no pair could be compared); ``best`` marks the best
    simple reference; ``inert``: the arm's selector collapsed at prediction (see
    :mod:`ptrag.report.retrieval`). Metrics no method was scored on are left out.
    """
    shown = [m for m in metrics if m in results.columns and results[m].notna().any()]
    tests = {
        (row["arm"], row["baseline"], row["metric"]): row
        for row in scoreboard_tests(results, baseline, shown, best)
    }
    present = set(results["method"])
    rows = []
    for name, group in method_groups(kinds).items():
        if name not in present:
            continue
        cells = {}
        for m in shown:
            reference = best.get(m, {}).get("name")
            cells[m] = {
                "mean": (methods[name]["metrics"].get(m) or {}).get("mean"),
                "best": name == reference,
                "vs_baseline": _mark(tests.get((name, baseline, m))),
                "vs_best_reference": _mark(tests.get((name, reference, m))),
            }
        inert = bool((retrieval.get(name) or {}).get("collapsed"))
        rows.append({"method": name, "group": group, "inert": inert, "cells": cells})
    return {"metrics": shown, "rows": rows}


@dataclass(frozen=True)
class Mark:
    text: str  # "+", "=", "−" or "·"
    css: str  # "better", "same", "worse" or "none"
    title: str  # in words, with p


@dataclass(frozen=True)
class Cell:
    mean: float | None
    best: bool
    marks: tuple[Mark, Mark]  # against the baseline, against the best simple reference


@dataclass(frozen=True)
class Row:
    label: str
    note: str  # e.g. "retrieval inert"
    group: str
    cells: list[Cell]


@dataclass(frozen=True)
class Board:
    title: str
    metrics: list[str]
    directions: list[str]  # "lower", "higher", "closer to 1"
    rows: list[Row]


@dataclass(frozen=True)
class Scoreboards:
    """The first block of the report: one board per split and a one-line legend."""

    boards: list[Board]
    legend: str


def _to_mark(entry: Mapping[str, Any] | None) -> Mark:
    if entry is None:
        return Mark(NOT_COMPARED, "none", "not compared")
    outcome = entry["outcome"]
    words = {"better": "better than", "worse": "worse than", "no different": "no different from"}[outcome]
    title = f"{words} {display(entry['comparator'])} ({p_text(entry['p_value'])})"
    return Mark(MARK_TEXT[outcome], MARK_CLASS[outcome], title)


def board(section: Mapping[str, Any], title: str) -> Board | None:
    """A split's board, from its summary section; None when the section has no scoreboard."""
    entry = section.get("scoreboard") or {}
    if not entry.get("rows") or not entry.get("metrics"):
        return None
    rows = [
        Row(
            display(row["method"]),
            "retrieval inert" if row["inert"] else "",
            row["group"],
            [
                Cell(
                    cell["mean"],
                    cell["best"],
                    (_to_mark(cell["vs_baseline"]), _to_mark(cell["vs_best_reference"])),
                )
                for cell in (row["cells"][m] for m in entry["metrics"])
            ],
        )
        for row in entry["rows"]
    ]
    directions = [metric(m).direction for m in entry["metrics"]]
    return Board(title, list(entry["metrics"]), directions, rows)


def legend(baseline: str, n_seeds: int) -> str:
    """The scoreboard's legend, one line."""
    seeds = " (each first averaged over seeds)" if n_seeds > 1 else ""
    return (
        f"Mean over test perturbations{seeds}; marks: vs {display(baseline)}, then vs the best simple "
        f"reference (bold): + better, = no different, − worse (paired Wilcoxon, p < {SIGNIFICANCE:g}), "
        f"{NOT_COMPARED} not compared."
    )
