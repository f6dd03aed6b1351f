"""Benchmark report: a summary dict (schema in :mod:`ptrag.report.summary`), one section per split,
rendered as ``summary.json``, ``report.md`` and a self-contained ``report.html`` with embedded figures.

Public API::

    from ptrag.report import SplitResults, build_summary, write_report
    summary = build_summary({"fewshot": SplitResults(long_results, kinds={"st": "arm", "ptrag": "arm",
                                                                          "control": "reference"})},
                            n_seeds=3)
    write_report(summary, "out/report")

The page opens with a headline box (one sentence per arm and split against ST and the best simple
reference), then per split: dot plots and tables of the headline metrics, "retrieval at work"
(selection rates in training and at prediction, kept candidates), and the paired comparisons.
"""

from ptrag.report.document import MAX_TABLE_COLUMNS, build_document, fmt
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
