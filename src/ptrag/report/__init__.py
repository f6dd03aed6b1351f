"""Benchmark report: a summary dict (schema in :mod:`ptrag.report.summary`) rendered as
``summary.json``, ``report.md`` and a self-contained ``report.html`` with embedded PNG figures.

Public API::

    from ptrag.report import build_summary, write_report
    summary = build_summary(long_results, kinds={"st": "arm", "ptrag": "arm", "control": "reference"},
                            retrieval=retrieval_records)
    write_report(summary, "out/report")
"""

from ptrag.report.render import fmt, render_html, render_markdown, write_report
from ptrag.report.summary import SCHEMA_VERSION, build_summary, neighbour_examples, selection_stats

__all__ = [
    "SCHEMA_VERSION",
    "build_summary",
    "fmt",
    "neighbour_examples",
    "render_html",
    "render_markdown",
    "selection_stats",
    "write_report",
]
