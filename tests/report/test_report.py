"""The report: scoreboards and a figure first, then the verdicts, one section per split, tables that
fit, numbers that match scipy."""

from __future__ import annotations

import html
import json
import re
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest
from scipy.stats import wilcoxon

from ptrag.evaluation import REFERENCE_REGISTRY
from ptrag.report import MAX_TABLE_COLUMNS, SplitResults, build_summary, fmt, write_report
from ptrag.report.document import Table
from ptrag.report.headline import seed_warnings

ARMS = ("st", "ptrag", "memory")
REFERENCES = ("control", "train_mean", "perturb_shift", "linear", "noise_floor")
SIMPLE = REFERENCES[:-1]
# Offsets on a shared per-perturbation difficulty (lower w1 is better): ptrag clearly beats st,
# memory is st plus noise, control is far worse (st's gain over control is about 0.3).
OFFSETS = {
    "st": 0.0,
    "ptrag": -0.06,
    "memory": 0.0,
    "control": 0.3,
    "train_mean": 0.2,
    "perturb_shift": 0.1,
    "linear": 0.05,
    "noise_floor": 0.15,
}
N = 30


def _results(seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    difficulty = rng.gamma(3.0, 0.1, N)
    rows = []
    for method, offset in OFFSETS.items():
        noise = rng.normal(0, 0.02, N)
        for i in range(N):
            w1 = difficulty[i] + offset + noise[i]
            rows.append(
                {
                    "method": method,
                    "cell_type": ("k562", "rpe1")[i % 2],
                    "perturbation": f"GENE{i}",
                    "w1": w1,
                    "w2": 1.3 * w1,
                    "energy_gene": 2 * w1,
                    # The split-half MMD is unbiased: it scatters around 0, here below it.
                    "mmd_gene": -0.01 + noise[i] / 10 if method == "noise_floor" else w1 / 10,
                    "pearson_delta": 1 - w1 if i or method != "memory" else np.nan,
                    "sd_ratio": 0.9,
                    "mse": w1 / 3,
                }
            )
    return pd.DataFrame(rows)


def _retrieval(collapsed: bool) -> pd.DataFrame:
    rows = []
    for set_id in range(8):
        cell_type, perturbation = ("k562", "rpe1")[set_id % 2], f"GENE{set_id}"
        for rank in range(4):
            own = rank == 0  # the query perturbation measured in the other cell type
            other = "rpe1" if cell_type == "k562" else "k562"
            keep = own and not collapsed
            rows.append(
                {
                    "set_id": set_id,
                    "cell_type": cell_type,
                    "perturbation": perturbation,
                    "rank": rank,
                    "candidate": f"{perturbation}@{other}" if own else f"CAND{rank}@{cell_type}",
                    "cosine": 1.0 if own else 0.8 - 0.1 * rank,
                    "keep_probability": 0.9 if keep else 0.01 * rank,
                    "keep_weight": 1.0 if keep else 0.0,
                    "kept": keep,
                    "evidence_cells": 40 + rank,  # an optional column: shown as it comes
                }
            )
    return pd.DataFrame(rows).assign(seed=0)


def _training() -> pd.DataFrame:
    steps = np.arange(0, 3000, 10)
    return pd.DataFrame({"step": steps, "train/selection_rate": 0.5 * np.exp(-steps / 500), "seed": 0})


SPREAD = {
    "st": {"quantiles": [0.1, 0.5, 0.9], "all": [0.97, 1.031, 1.2], "moved": [0.95, 0.99, 1.02],
           "other": [0.98, 1.052, 1.25], "share_off_by_10pct": 0.125, "n_genes": 40, "n_conditions": 30},
    "control": {"quantiles": [0.1, 0.5, 0.9], "all": [0.9, 1.0, 1.1], "moved": [0.8, 0.9, 1.0],
                "other": [0.95, 1.0, 1.05], "share_off_by_10pct": 0.2, "n_genes": 40, "n_conditions": 30},
}  # fmt: skip


def _summary(n_seeds: int = 1) -> dict:
    kinds = {**{a: "arm" for a in ARMS}, **{r: "reference" for r in REFERENCES}}
    splits = {
        name: SplitResults(
            _results(seed),
            kinds,
            label=label,
            description=f"{label} description.",
            retrieval={"ptrag": _retrieval(collapsed=False), "memory": _retrieval(collapsed=True)},
            # metrics.csv has every column; an arm without a selector leaves its rate empty.
            training={
                "st": _training().assign(**{"train/selection_rate": np.nan}),
                "ptrag": _training(),
                "memory": _training(),
            },
            info={"n_test_groups": N},
            # only the few-shot split has spread summaries: a summary from before schema 5 has none
            spread=SPREAD if name == "fewshot" else {},
        )
        for seed, (name, label) in enumerate((("fewshot", "few-shot"), ("unseen", "unseen")))
    }
    return build_summary(splits, n_seeds=n_seeds, n_boot=300, title="test benchmark")


@pytest.fixture(scope="module")
def summary() -> dict:
    return _summary()


@pytest.fixture(scope="module")
def written(summary, tmp_path_factory) -> dict:
    """The report files, written once: name → path."""
    return write_report(summary, tmp_path_factory.mktemp("report"))


class _Page(HTMLParser):
    """The body's top-level tags in order, and the cell count of every table row."""

    def __init__(self) -> None:
        super().__init__()
        self.depth, self.top, self.row_widths, self.in_body = 0, [], [], False
        self.current_row = 0

    def handle_starttag(self, tag, attrs):
        if tag == "body":
            self.in_body = True
            return
        if self.in_body and self.depth == 0:
            self.top.append((tag, dict(attrs).get("class")))
        if tag == "tr":
            self.current_row = 0
        if tag in ("td", "th"):
            self.current_row += 1
        if tag not in ("br", "img", "meta"):
            self.depth += self.in_body

    def handle_endtag(self, tag):
        if tag == "tr":
            self.row_widths.append(self.current_row)
        if self.in_body and tag not in ("body", "html"):
            self.depth -= 1


def test_report_structure_scoreboards_first_tables_fit_images_embedded(written, summary):
    paths = written
    page = paths["html"].read_text()
    parsed = _Page()
    parsed.feed(page)
    # The first screen: title, the scoreboards, their legend and one figure; then the verdicts box.
    assert parsed.top[:5] == [("h1", None), ("div", "boards"), ("p", "legend"), ("figure", None),
                              ("div", "headline")]  # fmt: skip
    start = page.index("<div class='headline'>")
    headline = page[start : page.index("</div>", start)]
    for entry in summary["headline"]:
        assert re.sub(r"<b>(.*?)</b>", r"\1", headline).count(html.escape(entry["sentence"])) == 1
    assert "Few-shot split (30 test perturbations)" in headline and "Unseen split" in headline
    assert page.index("<h2>Few-shot split</h2>") < page.index("<h2>Unseen split</h2>")
    assert page.count("<h3>Paired comparisons</h3>") == 2 and page.count("<h3>Retrieval at work</h3>") == 2
    assert parsed.row_widths and max(parsed.row_widths) <= MAX_TABLE_COLUMNS
    figures = sorted(p.name for p in (paths["html"].parent / "figures").iterdir())
    assert figures == [
        "headline.png",
        "metrics_fewshot.png",
        "metrics_unseen.png",
        "selection_fewshot.png",
        "selection_unseen.png",
    ]
    assert page.count("data:image/png;base64,") == 5 and "src='figures/" not in page
    markdown = paths["markdown"].read_text()
    assert markdown.startswith("# test benchmark\n")
    assert markdown.index("| method | w1 (lower) |") < markdown.index("## Verdicts")
    for name in figures:
        assert f"figures/{name}" in markdown


def test_headline_sentences_effects_in_metric_units_and_seed_warning(summary):
    results = _results(0)
    mean = results.groupby("method")["w1"].mean()
    sentences = {h["arm"]: h["sentence"] for h in summary["headline"] if h["split"] == "fewshot"}
    assert list(sentences) == list(ARMS)
    # Effects are both means and their difference in w1's own units; the noise floor is worse than
    # ST here (offset 0.15), so no share of the gap to it is given.
    difference = f"{mean['ptrag'] - mean['st']:+#.2g}".replace("-", "−")
    assert sentences["ptrag"].startswith(
        f"ptrag is better than ST on w1 ({fmt(mean['ptrag'])} vs {fmt(mean['st'])}, {difference}; p"
    )
    assert sentences["memory"].startswith("memory is no different from ST on w1")
    versus_linear = f"better than the best simple reference on w1 ({fmt(mean['ptrag'])} vs linear"
    assert versus_linear in sentences["ptrag"]
    assert not any("×" in h["sentence"] or "gain over control" in h["sentence"] for h in summary["headline"])
    assert sentences["st"].startswith("ST is ") and " ST on " not in sentences["st"]
    assert summary["headline_metrics"] == ["w1", "energy_gene", "pearson_delta"]  # one per family
    assert "p < 0.05" in json.dumps(summary) or summary["significance"] == 0.05
    assert "one seed is not enough" in summary["warnings"][0]
    assert seed_warnings(3) == [] and len(seed_warnings(2)) == 1


def test_comparisons_against_st_and_every_simple_reference_match_scipy(summary):
    results = _results(0).set_index(["cell_type", "perturbation"])
    section = summary["splits"]["fewshot"]
    tests = {(t["arm"], t["baseline"], t["metric"]): t for t in section["paired_tests"]}
    assert {(a, b) for a, b, _ in tests} == {("ptrag", "st"), ("memory", "st")} | {
        (arm, ref) for arm in ARMS for ref in SIMPLE
    }
    by = {m: results[results["method"] == m] for m in OFFSETS}
    for arm, other in (("ptrag", "st"), ("memory", "linear"), ("st", "perturb_shift")):
        test = tests[(arm, other, "w1")]
        assert test["p_value"] == pytest.approx(wilcoxon(by[arm]["w1"], by[other]["w1"]).pvalue, rel=1e-12)
        gain = (by[other]["w1"] - by[arm]["w1"]).mean()
        assert test["mean_improvement"] == pytest.approx(gain)
    assert tests[("ptrag", "st", "w1")]["outcome"] == "better"
    assert tests[("memory", "st", "pearson_delta")]["n_pairs"] == N - 1  # its NaN pair is dropped
    assert tests[("st", "control", "pearson_delta")]["outcome"] == "better"
    # Best simple reference by mean; the noise floor (best MMD here) is a yardstick, never chosen.
    assert section["best_reference"]["w1"]["name"] == "linear"
    assert section["best_reference"]["mmd_gene"]["name"] == "linear"
    assert section["best_reference"]["pearson_delta"]["name"] == "linear"
    assert section["best_reference"]["sd_ratio"]["name"] in SIMPLE  # all tie at 0.9


def test_every_table_number_is_in_summary_json(written):
    paths = written
    stored = json.loads(paths["summary"].read_text())

    def numbers(node):
        if isinstance(node, dict):
            for value in node.values():
                yield from numbers(value)
        elif isinstance(node, list):
            for value in node:
                yield from numbers(value)
        elif isinstance(node, (int, float)) and not isinstance(node, bool):
            yield node

    known = {fmt(v) for v in numbers(stored)}
    table_lines = [line for line in paths["markdown"].read_text().splitlines() if line.startswith("| ")]
    cells = [cell.strip() for line in table_lines for cell in line.strip("|").split("|")]
    shown = [
        token
        for cell in cells
        for token in re.split(r"[\s\[\](),]+", cell)
        if re.fullmatch(r"-?\d+(\.\d+)?(e[-+]\d+)?", token)  # skips names, "n/a", percentages
    ]
    assert len(shown) > 200
    assert [t for t in shown if t not in known] == []
    results = _results(1)
    for method in OFFSETS:
        w1 = results[results.method == method]["w1"]
        stats = stored["splits"]["unseen"]["methods"][method]["metrics"]["w1"]
        assert stats["mean"] == pytest.approx(w1.mean())
        assert stats["ci_low"] < w1.mean() < stats["ci_high"]


def test_retrieval_at_work(written, summary):
    retrieval = summary["splits"]["fewshot"]["retrieval"]
    assert list(retrieval) == ["ptrag", "memory"]  # st has no selector
    ptrag, memory = retrieval["ptrag"], retrieval["memory"]
    assert ptrag["kept_fraction"] == pytest.approx(0.25) and not ptrag["collapsed"]
    assert memory["kept_fraction"] == 0.0 and memory["collapsed"]
    assert ptrag["prediction"]["k562"] == {
        "n_sets": 4,
        "n_candidates": 16,
        "selection_rate": 0.25,
        "kept_fraction": 0.25,
        "kept_per_set": 1.0,
    }
    assert ptrag["same_perturbation"] == {
        "n_same": 8,
        "kept_fraction_same": 1.0,
        "n_other": 24,
        "kept_fraction_other": 0.0,
    }
    assert ptrag["examples_kept"] and all(
        e["candidate"].startswith(e["perturbation"]) for e in ptrag["examples"]
    )
    assert ptrag["extra_columns"] == ["evidence_cells"] and ptrag["examples"][0]["evidence_cells"] == 40
    curve = ptrag["training"]["seed0"]
    assert len(curve["step"]) == 200 and curve["step"][0] == 0 and curve["step"][-1] == 2990
    assert curve["selection_rate"][0] == pytest.approx(0.5)
    assert ptrag["training_final_rate"] == pytest.approx(0.5 * np.exp(-2990 / 500))
    markdown = written["markdown"].read_text()
    assert "memory: nothing kept; the likeliest candidates" in markdown
    assert markdown.count("Selection has collapsed") == 3  # memory, in each split, and in the headline
    assert summary["warnings"][-1].endswith("memory (few-shot 0%, unseen 0%).")
    assert "| query | candidate | cosine | keep probability | keep weight | evidence_cells |" in markdown


def test_noise_floor_row_is_explained(written, summary):
    notes = " ".join(summary["splits"]["fewshot"]["noise_floor_notes"])
    assert REFERENCE_REGISTRY["noise_floor"].note in notes
    assert "Its mmd_gene (" in notes and "unbiased" in notes  # negative MMD explained
    assert "worse than an arm on w1, w2, energy_gene" in notes and "not a lower bound" in notes
    page = written["html"].read_text()
    assert page.count("scatters around 0") >= 2  # under each split's headline table


def test_tables_never_exceed_the_column_limit():
    with pytest.raises(ValueError, match="columns"):
        Table("too wide", [f"c{i}" for i in range(MAX_TABLE_COLUMNS + 1)], [])


def test_a_verdict_whose_mean_points_the_other_way_says_so() -> None:
    from ptrag.report.headline import arm_sentence

    # The paired test says "better" (more groups better, p = 0.023) while the mean is 0.0016 worse:
    # the sentence must not read as a contradiction.
    methods = {
        "ptrag": {"kind": "arm", "metrics": {"energy_gene": {"mean": 1.2950}}},
        "evidence_only": {"kind": "reference", "metrics": {"energy_gene": {"mean": 1.2934}}},
    }
    row = {
        "arm": "ptrag", "baseline": "evidence_only", "metric": "energy_gene", "n_pairs": 157, "wins": 95,
        "losses": 62, "ties": 0, "p_value": 0.023, "mean_improvement": -0.0016, "outcome": "better",
    }
    best = {"energy_gene": {"name": "evidence_only"}}
    sentence = arm_sentence("ptrag", [row], best, "st", ["energy_gene"], methods)
    assert "better than the best simple reference on energy_gene (1.295 vs evidence_only 1.293, +0.0016;" in (
        sentence
    )
    assert "better in 95 of 157 groups, though worse on average; p = 0.023" in sentence


def test_the_per_gene_spread_table_shows_each_methods_quantiles(written, summary):
    assert summary["splits"]["fewshot"]["gene_spread"]["st"]["other"] == [0.98, 1.052, 1.25]
    assert summary["splits"]["unseen"]["gene_spread"] == {}
    markdown = written["markdown"].read_text()
    title = "Per-gene spread: predicted SD / real SD"
    assert markdown.count(title) == 1  # the unseen split has none and shows none
    table = markdown[markdown.index(title) :]
    st_row = next(line for line in table.splitlines() if line.startswith("| st |"))
    assert "1.031" in st_row and "(0.97–1.2)" in st_row and "1.052" in st_row and "12.5%" in st_row
