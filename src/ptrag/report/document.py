"""The report as a list of blocks (scoreboards, headline, headings, text, tables, figures), built from
the summary. The first screen: the title, one scoreboard per split, one figure; then the verdicts.

Markdown and HTML render the same blocks (:mod:`ptrag.report.render`). Every number in a table is
read from the summary and formatted by :func:`fmt`. No table has more than
:data:`MAX_TABLE_COLUMNS` columns, so tables fit the page; long tables are folded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ptrag.evaluation.metric_registry import FAMILIES, metric, metrics_where
from ptrag.evaluation.spread import MOVED_SHARE
from ptrag.report.headline import display, method_note, split_title
from ptrag.report.numbers import fmt, fmt_cell, percent
from ptrag.report.scoreboard import Scoreboards, board, legend
from ptrag.retrieval import COLLAPSED_SELECTION

__all__ = [
    "MAX_TABLE_COLUMNS",
    "Block",
    "Details",
    "Figure",
    "Heading",
    "Headline",
    "Table",
    "Text",
    "build_document",
]

MAX_TABLE_COLUMNS = 8


@dataclass(frozen=True)
class Headline:
    title: str
    # (split heading, one (subject, rest of sentence) pair per arm): the subject is shown in bold
    splits: list[tuple[str, list[tuple[str, str]]]]
    warnings: list[str]
    note: str


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2


@dataclass(frozen=True)
class Text:
    text: str
    warning: bool = False


@dataclass(frozen=True)
class Table:
    title: str
    header: list[str]
    rows: list[list[str]]  # a "\n" in a cell is a line break
    note: str = ""
    folded: bool = False  # shown collapsed in HTML

    def __post_init__(self) -> None:
        if len(self.header) > MAX_TABLE_COLUMNS:
            raise ValueError(
                f"table {self.title!r} has {len(self.header)} columns; at most {MAX_TABLE_COLUMNS}"
            )


@dataclass(frozen=True)
class Figure:
    name: str
    caption: str


@dataclass(frozen=True)
class Details:
    title: str
    facts: dict[str, Any] = field(default_factory=dict)


Block = Scoreboards | Headline | Heading | Text | Table | Figure | Details


def _chunks(names: list[str], size: int) -> list[list[str]]:
    return [names[i : i + size] for i in range(0, len(names), size)]


def _metric_table(section: dict[str, Any], metrics: list[str], title: str, note: str, folded: bool) -> Table:
    rows = []
    for name, method in section["methods"].items():
        cells = [name]
        for m in metrics:
            s = method["metrics"][m]
            text = f"{fmt(s['mean'])}\n[{fmt(s['ci_low'])}, {fmt(s['ci_high'])}]"
            cells.append(text + (f" ({s['nan_count']} NaN)" if s["nan_count"] else ""))
        rows.append(cells)
    return Table(title, ["method", *metrics], rows, note, folded)


def _test_rows(tests: list[dict[str, Any]], with_comparator: bool) -> list[list[str]]:
    rows = []
    for t in tests:
        cells = [t["arm"], t["metric"]] + ([t["baseline"]] if with_comparator else [])
        cells += [fmt(t["median_difference"]), fmt(t["wins"]), fmt(t["losses"]), fmt(t["p_value"])]
        if not with_comparator:
            cells.append(fmt(t["mean_difference"]))
        rows.append([*cells, t["outcome"]])
    return rows


def _comparison_tables(summary: dict[str, Any], section: dict[str, Any]) -> list[Block]:
    baseline = summary["baseline"]
    verdict = [m for m in metrics_where("verdict") if m in summary["metrics"]]
    tests = [t for t in section["paired_tests"] if t["metric"] in verdict]
    if not tests:
        return []
    diff = "median diff (arm − other)"
    head = ["arm", "metric", diff, "wins", "losses", "p"]
    versus_baseline = [t for t in tests if t["baseline"] == baseline]
    best = section["best_reference"]
    versus_best = [t for t in tests if t["metric"] in best and t["baseline"] == best[t["metric"]]["name"]]
    arms = list(section["methods"])
    versus_best.sort(key=lambda t: (arms.index(t["arm"]), verdict.index(t["metric"])))
    versus_all = [t for t in tests if t["comparator_kind"] == "reference"]
    return [
        Heading("Paired comparisons", 3),
        Table(
            f"Every arm against {display(baseline)}",
            [*head, "mean diff (arm − other)", "outcome"],
            _test_rows(versus_baseline, with_comparator=False),
            "Wins count test perturbations where the arm is better. Differences are in the metric's "
            "own units, over the test perturbations both were scored on.",
        ),
        Table(
            "Every arm against the best simple reference of each metric",
            [*head[:2], "reference", *head[2:], "outcome"],
            _test_rows(versus_best, with_comparator=True),
        ),
        Table(
            "Every arm against every simple reference",
            [*head[:2], "reference", *head[2:], "outcome"],
            _test_rows(versus_all, with_comparator=True),
            folded=True,
        ),
        *_own_mean_table(section, head),
    ]


def _own_mean_table(section: dict[str, Any], head: list[str]) -> list[Block]:
    """Every arm against its own mean shift on real control cells, on the distributional metrics."""
    tests = [
        t for t in section.get("own_mean_tests", []) if metric(t["metric"]).family.endswith("distribution")
    ]
    if not tests:
        return []
    return [
        Table(
            "Every arm against its own mean shift on real control cells (<arm>_mean_on_controls)",
            [*head[:2], "row", *head[2:], "outcome"],
            _test_rows(tests, with_comparator=True),
            "Same mean as the arm, real control cells around it: where the arm is worse, what it does to "
            "single cells costs accuracy its mean alone would have had.",
            folded=True,
        )
    ]


def _spread_table(section: dict[str, Any]) -> list[Block]:
    """Every method's per-gene spread: where its cells are too wide or too narrow, gene by gene."""
    spread = section.get("gene_spread") or {}  # absent from summaries before schema 5
    if not spread:
        return []

    def band(values: list[float | None]) -> str:
        low, median, high = (fmt(v) for v in values)
        return f"{median}\n({low}–{high})"

    parts = ("all", "moved", "other")
    rows = [
        [name, *(band(entry[part]) for part in parts), percent(entry["share_off_by_10pct"])]
        for name, entry in spread.items()
    ]
    return [
        Table(
            "Per-gene spread: predicted SD / real SD, median (10th–90th percentile over genes)",
            ["method", "all genes", f"the {MOVED_SHARE:.0%} most moved", "the rest", "share > 10% off"],
            rows,
            "Within-condition SDs averaged over test perturbations, gene by gene (ptrag.evaluation.spread); "
            "sd_ratio averages over genes first. Cells that are right on average can be too wide where "
            "the perturbation barely moves a gene and too narrow where it moves it.",
            folded=True,
        )
    ]


def _selection_words(arm: str, entry: dict[str, Any]) -> Text:
    kept = entry.get("kept_fraction")
    training = entry.get("training_final_rate")
    parts = [f"{arm}: "]
    if training is not None:
        parts.append(f"the last logged training selection rate is {percent(training)}; ")
    if kept is None:
        parts.append("no retrieval records at prediction.")
        return Text("".join(parts))
    parts.append(f"at prediction {percent(kept)} of retrieved candidates were kept.")
    same = entry.get("same_perturbation")
    if same and same["kept_fraction_same"] is not None:
        parts.append(
            f" The query perturbation's own evidence from another cell type was kept "
            f"{percent(same['kept_fraction_same'])} of the time ({same['n_same']} candidates), other "
            f"candidates {percent(same['kept_fraction_other'])}."
        )
    if entry.get("collapsed"):
        parts.append(
            f" Selection has collapsed (under {COLLAPSED_SELECTION:.0%} kept): retrieval contributes next to "
            "nothing to this arm's predictions."
        )
    return Text("".join(parts), warning=bool(entry.get("collapsed")))


def _example_table(arm: str, entry: dict[str, Any]) -> Table:
    extra = entry["extra_columns"][: MAX_TABLE_COLUMNS - 5]
    header = ["query", "candidate", "cosine", "keep probability", "keep weight", *extra]
    rows = [
        [
            f"{e['perturbation']} in {e['cell_type']}",
            str(e["candidate"]),
            fmt(e.get("cosine")),
            fmt(e.get("keep_probability")),
            fmt(e.get("keep_weight")),
            *[fmt_cell(e.get(c)) for c in extra],
        ]
        for e in entry["examples"]
    ]
    title = (
        f"{arm}: kept candidates"
        if entry["examples_kept"]
        else f"{arm}: nothing kept; the likeliest candidates"
    )
    return Table(title, header, rows)


def _retrieval_blocks(section: dict[str, Any], split: str) -> list[Block]:
    retrieval = section.get("retrieval") or {}
    if not retrieval:
        return []
    blocks: list[Block] = [Heading("Retrieval at work", 3)]
    blocks += [_selection_words(arm, entry) for arm, entry in retrieval.items()]
    blocks.append(Figure(f"selection_{split}", "Selection rate in training and at prediction."))
    rows = [
        [
            arm,
            cell_type,
            fmt(s["n_sets"]),
            fmt(s["selection_rate"]),
            percent(s["kept_fraction"]),
            fmt(s["kept_per_set"]),
        ]
        for arm, entry in retrieval.items()
        for cell_type, s in entry["prediction"].items()
    ]
    if rows:
        header = ["arm", "cell type", "sets", "mean keep weight", "kept", "kept per set"]
        blocks.append(Table("Selection at prediction, per cell type", header, rows))
    blocks += [_example_table(arm, entry) for arm, entry in retrieval.items() if entry["examples"]]
    return blocks


def _split_blocks(summary: dict[str, Any], name: str, section: dict[str, Any]) -> list[Block]:
    label = section.get("label") or name
    info = section.get("info", {})
    blocks: list[Block] = [Heading(split_title(label))]
    if section.get("description"):
        facts = f" {fmt(info['n_test_groups'])} test perturbations." if "n_test_groups" in info else ""
        blocks.append(Text(section["description"] + facts))
    headline = [m for m in metrics_where("headline") if m in summary["metrics"]]
    notes = " ".join(section.get("noise_floor_notes", []))
    blocks.append(
        Figure(
            f"metrics_{name}",
            f"{label}: headline metrics, mean and 95% bootstrap CI over test perturbations per method. "
            "These intervals include how much perturbations differ from each other, so they overlap more "
            "than the paired tests, which compare methods perturbation by perturbation.",
        )
    )
    for chunk in _chunks(headline, MAX_TABLE_COLUMNS - 1):
        blocks.append(
            _metric_table(
                section,
                chunk,
                "Headline metrics (mean [95% CI] over test perturbations)",
                notes,
                folded=False,
            )
        )
    blocks += _retrieval_blocks(section, name)
    blocks += _comparison_tables(summary, section)
    blocks += _spread_table(section)
    for family in FAMILIES:
        names = [m for m in summary["metrics"] if summary["metric_info"][m]["family"] == family]
        for chunk in _chunks(names, MAX_TABLE_COLUMNS - 1):
            blocks.append(_metric_table(section, chunk, f"All metrics: {family}", notes, folded=True))
    return blocks


def _subject(arm: str, sentence: str) -> tuple[str, str]:
    subject = display(arm)
    return (subject, sentence[len(subject) :]) if sentence.startswith(subject) else ("", sentence)


def build_document(summary: dict[str, Any]) -> list[Block]:
    """The report's blocks: title, scoreboards, the headline figure, then the verdicts and the splits."""
    splits = summary["splits"]
    sentences, boards = [], []
    for name, section in splits.items():
        label = section.get("label") or name
        lines = [_subject(h["arm"], h["sentence"]) for h in summary["headline"] if h["split"] == name]
        n = section.get("info", {}).get("n_test_groups")
        title = split_title(label) + (f" ({n} test perturbations)" if n else "")
        sentences.append((title, lines))
        drawn = board(section, title)
        if drawn is not None:
            boards.append(drawn)
    blocks: list[Block] = [Heading(summary["title"], 1)]
    if boards:
        blocks.append(Scoreboards(boards, legend(summary["baseline"], summary["n_seeds"])))
    blocks.append(
        Figure(
            "headline",
            "The scoreboard's metrics: mean over test perturbations (dot) and 95% bootstrap CI (line) "
            f"per method; colour: arms, grey: references, hollow: noise floor, dashed line: "
            f"{display(summary['baseline'])}.",
        )
    )
    note = method_note(summary["n_seeds"], summary["baseline"])
    blocks.append(Headline("Verdicts", sentences, list(summary.get("warnings", [])), note))
    for name, section in splits.items():
        blocks += _split_blocks(summary, name, section)
    blocks.append(Details("Run details", dict(summary.get("info", {}))))
    return blocks
