"""Write ``summary.json``, ``report.md`` and a self-contained ``report.html`` from a summary dict.

Every number in the tables is read from the summary, formatted by :func:`fmt`, so summary.json
holds all of them.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

from ptrag.io import atomic_write_bytes, atomic_write_text
from ptrag.report.figures import all_figures

FIGURE_CAPTIONS: dict[str, str] = {
    "metric_bars": "Metrics per method, mean over perturbations with 95% bootstrap CIs.",
    "scatter_w1_w2": "Per-perturbation W1 and W2: PT-RAG against ST (below the diagonal: PT-RAG better).",
    "selection": "Selection rate and kept-candidate count per set, per cell line.",
}


def fmt(value: Any) -> str:
    """The one number format of the report (4 significant digits; NaN/None as 'n/a')."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    return f"{float(value):.4g}"


def _tables(summary: dict[str, Any]) -> list[tuple[str, list[str], list[list[str]], str]]:
    """(title, header, rows, note) for every table of the report."""
    metrics = summary["metrics"]
    tables = []
    rows = []
    for name, method in summary["methods"].items():
        cells = [name, method["kind"]]
        for metric in metrics:
            s = method["metrics"][metric]
            text = f"{fmt(s['mean'])} [{fmt(s['ci_low'])}, {fmt(s['ci_high'])}]"
            if s["nan_count"]:
                text += f" ({s['nan_count']} NaN)"
            cells.append(text)
        rows.append(cells)
    notes = "; ".join(f"{n}: {m['note']}" for n, m in summary["methods"].items() if m["note"])
    tables.append(("Metrics (mean [95% CI] over perturbations)", ["method", "kind", *metrics], rows, notes))

    if summary["paired_tests"]:
        header = ["arm", "metric", "pairs", "median diff (arm − baseline)", "wins", "losses", "p (Wilcoxon)"]
        test_rows = [
            [
                t["arm"],
                t["metric"],
                fmt(t["n_pairs"]),
                fmt(t["median_difference"]),
                fmt(t["wins"]),
                fmt(t["losses"]),
                fmt(t["p_value"]),
            ]
            for t in summary["paired_tests"]
        ]
        tables.append(
            (
                f"Paired Wilcoxon signed-rank tests against {summary['baseline']}",
                header,
                test_rows,
                "Two-sided, across perturbations; wins count perturbations where the arm is better.",
            )
        )

    if summary["selection"]:
        header = ["cell line", "sets", "selection rate (mean)", "(median)", "kept (mean)", "(median)"]
        selection_rows = [
            [
                cell_type,
                fmt(s["n_sets"]),
                fmt(s["selection_rate_mean"]),
                fmt(s["selection_rate_median"]),
                fmt(s["kept_mean"]),
                fmt(s["kept_median"]),
            ]
            for cell_type, s in summary["selection"].items()
        ]
        tables.append(("PT-RAG selection per cell line", header, selection_rows, ""))

    for example in summary["neighbours"]:
        header = ["candidate", "cosine", "keep weight", "kept"]
        neighbour_rows = [
            [c["candidate"], fmt(c["cosine"]), fmt(c["keep_weight"]), fmt(c["kept"])]
            for c in example["candidates"]
        ]
        tables.append(
            (
                f"Retrieved neighbours of {example['perturbation']} in {example['cell_type']}",
                header,
                neighbour_rows,
                "",
            )
        )
    return tables


def _split_info(info: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Short facts go in a list at the top; nested run details at the end, as JSON."""
    simple = {k: v for k, v in info.items() if not isinstance(v, dict | list)}
    return simple, {k: v for k, v in info.items() if k not in simple}


def render_markdown(summary: dict[str, Any], figure_files: dict[str, str]) -> str:
    lines = [f"# {summary['title']}", ""]
    if summary.get("verdict"):
        lines += ["## Verdict", "", *[f"- {line}" for line in summary["verdict"]], ""]
    simple, nested = _split_info(summary.get("info", {}))
    lines += [f"- **{key}**: {value}" for key, value in simple.items()]
    if simple:
        lines.append("")
    for title, header, rows, note in _tables(summary):
        lines += [f"## {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        if note:
            lines += ["", note]
        lines.append("")
    for name, path in figure_files.items():
        lines += [f"![{FIGURE_CAPTIONS.get(name, name)}]({path})", ""]
    for key, value in nested.items():
        lines += [f"## {key}", "", "```json", json.dumps(value, indent=1, default=str), "```", ""]
    return "\n".join(lines)


def render_html(summary: dict[str, Any], figures: dict[str, bytes]) -> str:
    esc = html.escape
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>{esc(summary['title'])}</title>",
        "<style>body{font-family:sans-serif;max-width:1200px;margin:auto;padding:1em}"
        "table{border-collapse:collapse;margin:0.5em 0;font-size:0.85em}"
        "td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}"
        "th{background:#f0f0f0}td:first-child{text-align:left}img{max-width:100%}</style>",
        f"</head><body><h1>{esc(summary['title'])}</h1>",
    ]
    if summary.get("verdict"):
        parts.append(
            "<h2>Verdict</h2><ul>" + "".join(f"<li>{esc(v)}</li>" for v in summary["verdict"]) + "</ul>"
        )
    simple, nested = _split_info(summary.get("info", {}))
    if simple:
        parts.append(
            "<ul>" + "".join(f"<li><b>{esc(str(k))}</b>: {esc(str(v))}</li>" for k, v in simple.items())
        )
        parts.append("</ul>")
    for title, header, rows, note in _tables(summary):
        parts.append(
            f"<h2>{esc(title)}</h2><table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr>"
        )
        parts += ["<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in rows]
        parts.append("</table>")
        if note:
            parts.append(f"<p>{esc(note)}</p>")
    for name, png in figures.items():
        encoded = base64.b64encode(png).decode("ascii")
        caption = esc(FIGURE_CAPTIONS.get(name, name))
        parts.append(f"<figure><img alt='{caption}' src='data:image/png;base64,{encoded}'>")
        parts.append(f"<figcaption>{caption}</figcaption></figure>")
    for key, value in nested.items():
        body = esc(json.dumps(value, indent=1, default=str))
        parts.append(f"<details><summary>{esc(key)}</summary><pre>{body}</pre></details>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(summary: dict[str, Any], out_dir: str | Path, scatter_arm: str = "ptrag") -> dict[str, Path]:
    """Write summary.json, report.md (+ figures/*.png it links) and self-contained report.html."""
    out = Path(out_dir)
    figures = all_figures(summary, scatter_arm=scatter_arm)
    figure_files = {}
    for name, png in figures.items():
        atomic_write_bytes(out / "figures" / f"{name}.png", png)
        figure_files[name] = f"figures/{name}.png"
    paths = {"summary": out / "summary.json", "markdown": out / "report.md", "html": out / "report.html"}
    atomic_write_text(paths["summary"], json.dumps(summary, indent=2, allow_nan=False) + "\n")
    atomic_write_text(paths["markdown"], render_markdown(summary, figure_files))
    atomic_write_text(paths["html"], render_html(summary, figures))
    return paths
