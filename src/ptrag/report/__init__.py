"""Benchmark report: a summary dict (schema in :mod:`ptrag.report.summary`), one section per split,
rendered as ``summary.json``, ``report.md`` and a self-contained ``report.html`` with embedded figures.

Public API::

    from ptrag.report import SplitResults, build_summary, write_report
    summary = build_summary({"fewshot": SplitResults(long_results, kinds={"st": "arm", "ptrag": "arm",
                                                                          "control": "reference"})},
                            n_seeds=3)
    write_report(summary, "out/report")

The page opens with the scoreboards (:mod:`ptrag.report.scoreboard`: per split, every method's mean
on each headline metric, marked better / no different / worse than ST and than the best simple
reference by the paired tests) and one figure of the same metrics; then the verdicts (one sentence
per arm and split, effects in each metric's own units) and warnings; then per split: dot plots and
tables of the headline metrics, "retrieval at work" (selection rates in training and at prediction,
kept candidates), and the paired comparisons.
"""

from ptrag.report.document import MAX_TABLE_COLUMNS, build_document
from ptrag.report.numbers import fmt
from ptrag.report.render import render_html, render_markdown, write_report
from ptrag.report.summary import SCHEMA_VERSION, SplitResults, build_summary

__all__ = [
    "MAX_TABLE_COLUMNS",
    "SCHEMA_VERSION",
    "SplitResults",
    "build_document",
    "build_summary",
    "fmt",
    "render_html",
    "render_markdown",
    "write_report",
]
