"""Write ``summary.json``, ``report.md`` and a self-contained ``report.html`` from a summary dict.

Both documents render the blocks of :func:`ptrag.report.document.build_document`: the title, one
scoreboard per split and the headline figure first, then the verdicts box, one section per split
(headline metrics, retrieval at work, paired comparisons, all metrics) and the run details.
"""

from __future__ import annotations

import base64
import html
import json
import re
from pathlib import Path
from typing import Any

from ptrag.io import atomic_write_bytes, atomic_write_text
from ptrag.report.document import Block, Figure, Heading, Headline, Table, Text, build_document
from ptrag.report.figures import all_figures
from ptrag.report.numbers import fmt
from ptrag.report.scoreboard import Board, Cell, Scoreboards

__all__ = ["render_html", "render_markdown", "write_report"]

NUMBER = re.compile(r"^(-?\d|n/a)")  # cells that start with a number are right-aligned
STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:1100px;margin:auto;padding:1em;color:#222}"
    ".headline{border:2px solid #3b6ea8;border-radius:6px;background:#f3f7fc;padding:0.6em 1.2em;"
    "margin-bottom:1.5em}.headline h2{font-size:1.2em;margin:0.3em 0}.headline li{margin:0.3em 0}"
    "h1{font-size:1.3em;margin:0.2em 0 0.4em}"
    ".boards{display:flex;flex-wrap:wrap;gap:0 1.5em;align-items:flex-start}"
    "table.board{font-size:0.85em}table.board td{white-space:nowrap;padding:2px 7px}"
    "table.board th small{font-weight:normal;color:#666}table.board td small{color:#a00000}"
    "tr.reference td,tr.diagnostic td{color:#444}tr.group-start td{border-top:2px solid #888}"
    ".mark{display:inline-block;width:1.15em;margin-left:3px;border-radius:3px;text-align:center;"
    "font-weight:700;color:#fff}.mark.better{background:#1a7f37}.mark.worse{background:#c62828}"
    ".mark.same{background:#b0b0b0}.mark.none{color:#bbb}.legend{font-size:0.8em;color:#444;"
    "margin:0.1em 0 0.6em}figure{margin:0.3em 0 1em}"
    ".warning{color:#a00000;font-weight:600}.note{color:#555;font-size:0.85em}"
    ".scroll{max-width:100%;overflow-x:auto}"
    "table{border-collapse:collapse;margin:0.4em 0;font-size:0.82em;max-width:100%}"
    "td,th{border:1px solid #ccc;padding:3px 6px;text-align:left;vertical-align:top;"
    "overflow-wrap:anywhere}th{background:#f0f0f0}td.num{text-align:right}"
    "img{max-width:100%}caption{text-align:left;font-weight:600;padding:0.3em 0}"
    "details{margin:0.5em 0}summary{cursor:pointer;color:#3b6ea8}"
)


def _split_facts(facts: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Short facts go in a list; nested run details as JSON."""
    simple = {k: v for k, v in facts.items() if not isinstance(v, dict | list)}
    return simple, {k: v for k, v in facts.items() if k not in simple}


def _markdown_cell(cell: Cell) -> str:
    value = f"**{fmt(cell.mean)}**" if cell.best else fmt(cell.mean)
    return f"{value} {''.join(mark.text for mark in cell.marks)}"


def _markdown_board(board: Board) -> list[str]:
    header = [f"{m} ({d})" for m, d in zip(board.metrics, board.directions, strict=True)]
    lines = [f"**{board.title}**", "", "| method | " + " | ".join(header) + " |"]
    lines.append("|" + "---|" * (len(header) + 1))
    for row in board.rows:
        label = f"{row.label} ({row.note})" if row.note else row.label
        lines.append(f"| {label} | " + " | ".join(_markdown_cell(c) for c in row.cells) + " |")
    return [*lines, ""]


def _markdown_block(block: Block, figure_files: dict[str, str]) -> list[str]:
    if isinstance(block, Scoreboards):
        return [line for board in block.boards for line in _markdown_board(board)] + [block.legend, ""]
    if isinstance(block, Headline):
        lines = [f"## {block.title}", ""]
        for heading, sentences in block.splits:
            items = [f"- **{subject}**{rest}" if subject else f"- {rest}" for subject, rest in sentences]
            lines += [f"**{heading}**", "", *items, ""]
        lines += [f"> **Warning.** {w}" for w in block.warnings]
        return [*lines, "", f"_{block.note}_", ""]
    if isinstance(block, Heading):
        return ["#" * block.level + f" {block.text}", ""]
    if isinstance(block, Text):
        return [("**Warning.** " if block.warning else "") + block.text, ""]
    if isinstance(block, Table):
        lines = [
            f"**{block.title}**",
            "",
            "| " + " | ".join(block.header) + " |",
            "|" + "---|" * len(block.header),
        ]
        lines += ["| " + " | ".join(c.replace("\n", " ") for c in row) + " |" for row in block.rows]
        return [*lines, *(["", block.note] if block.note else []), ""]
    if isinstance(block, Figure):
        return [f"![{block.caption}]({figure_files[block.name]})", ""] if block.name in figure_files else []
    simple, nested = _split_facts(block.facts)
    lines = [f"## {block.title}", "", *[f"- **{k}**: {v}" for k, v in simple.items()], ""]
    for key, value in nested.items():
        lines += [f"### {key}", "", "```json", json.dumps(value, indent=1, default=str), "```", ""]
    return lines


def render_markdown(summary: dict[str, Any], figure_files: dict[str, str]) -> str:
    lines: list[str] = []
    for block in build_document(summary):
        lines += _markdown_block(block, figure_files)
    return "\n".join(lines)


def _cell(text: str, tag: str) -> str:
    numeric = tag == "td" and bool(NUMBER.match(text))
    body = "<br>".join(html.escape(part) for part in text.split("\n"))
    return f"<{tag} class='num'>{body}</{tag}>" if numeric else f"<{tag}>{body}</{tag}>"


def _html_cell(cell: Cell) -> str:
    value = f"<b>{fmt(cell.mean)}</b>" if cell.best else fmt(cell.mean)
    marks = "".join(
        f"<span class='mark {m.css}' title='{html.escape(m.title)}'>{html.escape(m.text)}</span>"
        for m in cell.marks
    )
    return f"<td class='num'>{value}{marks}</td>"


def _html_board(board: Board) -> str:
    esc = html.escape
    header = "".join(
        f"<th>{esc(m)}<br><small>{esc(d)} is better</small></th>"
        for m, d in zip(board.metrics, board.directions, strict=True)
    )
    rows, previous = [], None
    for row in board.rows:
        css = row.group + (" group-start" if previous is not None and row.group != previous else "")
        previous = row.group
        note = f" <small>{esc(row.note)}</small>" if row.note else ""
        cells = "".join(_html_cell(c) for c in row.cells)
        rows.append(f"<tr class='{css}'><td>{esc(row.label)}{note}</td>{cells}</tr>")
    return (
        f"<table class='board'><caption>{esc(board.title)}</caption><tr><th>method</th>{header}</tr>"
        + "".join(rows)
        + "</table>"
    )


def _html_block(block: Block, figures: dict[str, bytes]) -> str:
    esc = html.escape
    if isinstance(block, Scoreboards):
        boards = "".join(_html_board(board) for board in block.boards)
        return f"<div class='boards'>{boards}</div><p class='legend'>{esc(block.legend)}</p>"
    if isinstance(block, Headline):
        parts = [f"<div class='headline'><h2>{esc(block.title)}</h2>"]
        for heading, sentences in block.splits:
            items = "".join(f"<li><b>{esc(subject)}</b>{esc(rest)}</li>" for subject, rest in sentences)
            parts.append(f"<h3>{esc(heading)}</h3><ul>{items}</ul>")
        parts += [f"<p class='warning'>{esc(w)}</p>" for w in block.warnings]
        return "".join([*parts, f"<p class='note'>{esc(block.note)}</p></div>"])
    if isinstance(block, Heading):
        return f"<h{block.level}>{esc(block.text)}</h{block.level}>"
    if isinstance(block, Text):
        return f"<p class='warning'>{esc(block.text)}</p>" if block.warning else f"<p>{esc(block.text)}</p>"
    if isinstance(block, Table):
        rows = "".join("<tr>" + "".join(_cell(c, "td") for c in row) + "</tr>" for row in block.rows)
        table = (
            f"<div class='scroll'><table><caption>{esc(block.title)}</caption><tr>"
            + "".join(_cell(h, "th") for h in block.header)
            + f"</tr>{rows}</table></div>"
            + (f"<p class='note'>{esc(block.note)}</p>" if block.note else "")
        )
        if block.folded:
            return f"<details><summary>{esc(block.title)}</summary>{table}</details>"
        return table
    if isinstance(block, Figure):
        if block.name not in figures:
            return ""
        encoded = base64.b64encode(figures[block.name]).decode("ascii")
        return (
            f"<figure><img alt='{esc(block.caption)}' src='data:image/png;base64,{encoded}'>"
            f"<figcaption class='note'>{esc(block.caption)}</figcaption></figure>"
        )
    simple, nested = _split_facts(block.facts)
    parts = [f"<h2>{esc(block.title)}</h2><ul>"]
    parts += [f"<li><b>{esc(str(k))}</b>: {esc(str(v))}</li>" for k, v in simple.items()]
    parts.append("</ul>")
    for key, value in nested.items():
        body = esc(json.dumps(value, indent=1, default=str))
        parts.append(f"<details><summary>{esc(key)}</summary><pre>{body}</pre></details>")
    return "".join(parts)


def render_html(summary: dict[str, Any], figures: dict[str, bytes]) -> str:
    head = (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(summary['title'])}</title>"
        f"<style>{STYLE}</style></head><body>"
    )
    body = "\n".join(_html_block(block, figures) for block in build_document(summary))
    return f"{head}\n{body}\n</body></html>\n"


def write_report(summary: dict[str, Any], out_dir: str | Path) -> dict[str, Path]:
    """Write summary.json, report.md (+ figures/*.png it links) and self-contained report.html."""
    out = Path(out_dir)
    figures = all_figures(summary)
    figure_files = {}
    for name, png in figures.items():
        atomic_write_bytes(out / "figures" / f"{name}.png", png)
        figure_files[name] = f"figures/{name}.png"
    paths = {"summary": out / "summary.json", "markdown": out / "report.md", "html": out / "report.html"}
    atomic_write_text(paths["summary"], json.dumps(summary, indent=1, allow_nan=False) + "\n")
    atomic_write_text(paths["markdown"], render_markdown(summary, figure_files))
    atomic_write_text(paths["html"], render_html(summary, figures))
    return paths
