"""The scoreboard: first on the page, marks that follow the paired tests, any extra rows or metrics;
verdicts in the metric's own units that say when a collapsed selector makes a difference not retrieval's."""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest

from ptrag.report import SplitResults, build_summary, write_report

N = 30
# w1 offsets (lower is better) on a shared per-perturbation difficulty. `linear` is the best simple
# reference; `tie` differs from st by ±a symmetric pattern (Wilcoxon p = 1); the noise floor and an
# arm's mean shift on controls (a diagnostic row) are better than everything.
W1 = {
    "st": 0.0,
    "good": -0.1,
    "bad": 0.2,
    "tie": 0.0,
    "control": 0.3,
    "linear": 0.05,
    "evidence_only": 0.1,
    "noise_floor": -0.2,
    "good_mean_on_controls": -0.15,
}
KINDS = {
    "st": "arm",
    "good": "arm",
    "bad": "arm",
    "tie": "arm",
    "control": "reference",
    "linear": "reference",
    "evidence_only": "reference",  # an extra reference-like row: no name is hard-coded
    "noise_floor": "reference",
    "good_mean_on_controls": "diagnostic",
}
# (against ST, against the best simple reference) per method, as constructed: "+" better,
# "=" no different, "−" worse, "·" not compared.
EXPECTED_W1 = {
    "ST": "·+",
    "good": "++",
    "bad": "−−",
    "tie": "=+",
    "control": "−−",
    "linear": "−·",
    "evidence_only": "−−",
    "noise_floor": "++",
    "good_mean_on_controls": "++",
}
CLASS = {"+": "better", "=": "same", "−": "worse", "·": "none"}


def _results(with_energy: bool) -> pd.DataFrame:
    rng = np.random.default_rng(7)
    difficulty = rng.gamma(3.0, 0.1, N)
    symmetric = np.repeat(np.linspace(0.01, 0.02, N // 2), 2) * np.tile([1.0, -1.0], N // 2)
    rows = []
    for method, offset in W1.items():
        noise = np.zeros(N) if method == "st" else rng.normal(0, 0.01, N)
        if method == "tie":
            noise = symmetric
        w1 = difficulty + offset + noise
        row = {"method": method, "cell_type": "k562", "perturbation": [f"G{i}" for i in range(N)], "w1": w1}
        if with_energy:
            # energy_gene follows w1, except that `tie` is clearly worse than ST on it and the
            # extra reference was not scored on it at all.
            energy = 2 * w1 + (0.4 if method == "tie" else 0.0)
            row["energy_gene"] = np.full(N, np.nan) if method == "evidence_only" else energy
        rows.append(pd.DataFrame(row))
    return pd.concat(rows, ignore_index=True)


def _retrieval(kept: bool) -> pd.DataFrame:
    """Records of a selector that kept every candidate (kept=True) or none (a collapsed selection)."""
    return pd.DataFrame(
        {
            "set_id": np.repeat(np.arange(4), 3),
            "cell_type": "k562",
            "perturbation": np.repeat([f"G{i}" for i in range(4)], 3),
            "rank": np.tile(np.arange(3), 4),
            "candidate": [f"C{i}" for i in range(12)],
            "cosine": 0.5,
            "keep_probability": 0.9 if kept else 0.001,
            "keep_weight": 1.0 if kept else 0.0,
            "kept": kept,
        }
    )


@pytest.fixture(scope="module")
def summary() -> dict:
    retrieval = {"good": _retrieval(kept=False), "tie": _retrieval(kept=False), "bad": _retrieval(kept=True)}
    splits = {
        "fewshot": SplitResults(_results(with_energy=True), KINDS, label="few-shot", retrieval=retrieval),
        # A split without one of the headline metrics' columns must not break anything.
        "unseen": SplitResults(_results(with_energy=False), KINDS, label="unseen"),
    }
    return build_summary(splits, n_seeds=3, n_boot=100, title="scoreboard test")


@pytest.fixture(scope="module")
def page(summary, tmp_path_factory) -> str:
    return write_report(summary, tmp_path_factory.mktemp("report"))["html"].read_text()


class _Boards(HTMLParser):
    """Every scoreboard on the page: per board, {row label: [(value, [mark classes]) per column]}."""

    def __init__(self) -> None:
        super().__init__()
        self.boards: list[dict[str, list[tuple[str, list[str]]]]] = []
        self.headers: list[list[str]] = []
        self.row: list[tuple[str, list[str]]] | None = None
        self.cell: tuple[list[str], list[str]] | None = None  # (text pieces, mark classes)
        self.in_board = self.in_small = self.in_header = False

    def handle_starttag(self, tag, attrs):
        css = dict(attrs).get("class") or ""
        if tag == "table" and css == "board":
            self.in_board = True
            self.boards.append({})
            self.headers.append([])
        elif self.in_board and tag == "tr":
            self.row = []
        elif self.in_board and tag in ("td", "th"):
            self.in_header = tag == "th"
            self.cell = ([], [])
        elif self.in_board and tag == "span" and self.cell is not None:
            self.cell[1].append(css.split()[1])
        elif tag == "small":
            self.in_small = True

    def handle_endtag(self, tag):
        if tag == "table" and self.in_board:
            self.in_board = False
        elif tag == "small":
            self.in_small = False
        elif self.in_board and tag in ("td", "th") and self.cell is not None and self.row is not None:
            self.row.append((" ".join("".join(self.cell[0]).split()), self.cell[1]))
            self.cell = None
        elif self.in_board and tag == "tr" and self.row:
            if self.in_header:
                self.headers[-1] = [text for text, _ in self.row]
            else:
                self.boards[-1][self.row[0][0]] = self.row[1:]
            self.row = None

    def handle_data(self, data):
        if self.cell is not None and data not in ("+", "=", "−", "·"):
            self.cell[0].append(f" [{data}]" if self.in_small else data)


def _boards(page: str) -> _Boards:
    parsed = _Boards()
    parsed.feed(page)
    return parsed


def test_the_scoreboard_comes_before_any_verdict_or_paragraph(page, summary):
    body = page[page.index("<body>") :]
    first_board = body.index("<table class='board'>")
    figure = body.index("<figure>")
    assert first_board < figure < body.index("<div class='headline'>")
    # Nothing but the title above the scoreboard; the legend is the one line between it and the figure.
    assert re.findall(r"<(p|li|ul)\b", body[:first_board]) == []
    assert re.findall(r"<p class='(\w+)'", body[:figure]) == ["legend"]
    for entry in summary["headline"]:
        rest = entry["sentence"].removeprefix(entry["arm"] if entry["arm"] != "st" else "ST")
        assert body.index(html.escape(rest)) > figure


def test_marks_follow_the_paired_tests_of_a_constructed_table(page, summary):
    parsed = _boards(page)
    assert len(parsed.boards) == 2  # one per split
    fewshot, unseen = parsed.boards
    # Rows: arms, then the simple references (every kind "reference" but the noise floor), then the
    # diagnostic rows; the collapsed arms say their retrieval is inert.
    assert list(fewshot) == [
        "ST",
        "good [retrieval inert]",
        "bad",
        "tie [retrieval inert]",
        "control",
        "linear",
        "evidence_only",
        "noise_floor",
        "good_mean_on_controls",
    ]
    assert parsed.headers[0] == ["method", "w1 [lower is better]", "energy_gene [lower is better]"]
    for label, cells in fewshot.items():
        method = label.removesuffix(" [retrieval inert]")
        w1, energy = cells
        assert w1[1] == [CLASS[m] for m in EXPECTED_W1[method]], method
        mean = summary["splits"]["fewshot"]["methods"][method if method != "ST" else "st"]["metrics"]["w1"]
        assert w1[0] == f"{mean['mean']:.4g}"
        if method == "tie":
            assert energy[1] == ["worse", "worse"]  # clearly worse than ST and linear on energy_gene
        elif method == "evidence_only":
            assert energy == ("n/a", ["none", "none"])  # not scored on it: no value, no comparison
        else:
            assert energy[1] == w1[1]
    # The marks are the paired tests the verdicts use (scipy's Wilcoxon over perturbations).
    tests = {(t["arm"], t["baseline"], t["metric"]): t for t in summary["splits"]["fewshot"]["paired_tests"]}
    assert tests[("good", "st", "w1")]["outcome"] == "better"
    assert tests[("bad", "linear", "w1")]["outcome"] == "worse"
    assert tests[("tie", "st", "w1")]["p_value"] > 0.9  # symmetric differences
    # The split without energy_gene: a w1-only board, same rows, same marks.
    assert parsed.headers[1][1:] == [parsed.headers[0][1]]
    assert [cells[0][1] for cells in unseen.values()] == [[CLASS[m] for m in v] for v in EXPECTED_W1.values()]


def test_a_collapsed_selector_makes_the_difference_from_st_not_retrieval(summary):
    sentences = {h["arm"]: h["sentence"] for h in summary["headline"] if h["split"] == "fewshot"}
    assert sentences["good"].startswith("good is better than ST on w1 (")
    assert (
        "), but its selector kept 0% of candidates at prediction, so its difference from ST is not "
        "retrieval; better than the best simple reference" in sentences["good"]
    )
    # No difference from ST on w1, but worse on energy_gene: the clause follows the "worse" one.
    assert re.search(r"worse than ST on energy_gene \([^)]*\), but its selector kept 0%", sentences["tie"])
    assert "selector" not in sentences["bad"]  # it kept every candidate
    unseen = {h["arm"]: h["sentence"] for h in summary["headline"] if h["split"] == "unseen"}
    assert "selector" not in unseen["good"]  # no retrieval records in that split


def test_effects_are_in_the_metrics_units_never_multiples_of_st_gain(summary, page):
    methods = summary["splits"]["fewshot"]["methods"]
    good, st, floor = (methods[m]["metrics"]["w1"]["mean"] for m in ("good", "st", "noise_floor"))
    share = (st - good) / (st - floor)  # the noise floor beats ST on w1 here
    sentence = next(h["sentence"] for h in summary["headline"] if h["arm"] == "good")
    difference = f"{good - st:+#.2g}".replace("-", "−")
    gap = f"{100 * share:.0f}% of the gap between ST and the noise floor"
    assert f"w1 ({good:.4g} vs {st:.4g}, {difference}, {gap}; p < 0.001)" in sentence
    assert all("× of" not in h["sentence"] for h in summary["headline"])
    assert "× of" not in page and "gain over control" not in page
