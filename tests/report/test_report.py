"""Report renderer: three files, every table number in summary.json, Wilcoxon as scipy computes it."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
from scipy.stats import wilcoxon

from ptrag.evaluation import METRIC_REGISTRY, REFERENCE_REGISTRY
from ptrag.report import build_summary, fmt, write_report

ARMS = ("st", "vanilla_rag", "ptrag")
REFERENCES = ("control", "perturb_shift", "noise_floor")


def _results(n: int = 30, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    st_w1 = rng.gamma(3.0, 0.1, n)
    offsets = {
        "st": 0.0,
        "vanilla_rag": 0.05,
        "ptrag": -0.03,
        "control": 0.3,
        "perturb_shift": 0.1,
        "noise_floor": -0.2,
    }
    rows = []
    for method, offset in offsets.items():
        noise = rng.normal(0, 0.02, n)
        for i in range(n):
            w1 = st_w1[i] + offset + noise[i]
            rows.append(
                {
                    "method": method,
                    "cell_type": ("k562", "rpe1")[i % 2],
                    "perturbation": f"GENE{i}",
                    "w1": w1,
                    "w2": 1.3 * w1,
                    "energy_gene": 2 * w1,
                    "pearson_delta": 1 - w1 if i or method != "vanilla_rag" else np.nan,
                    "sd_ratio": 0.9,
                }
            )
    return pd.DataFrame(rows)


def _retrieval(seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for cell_type in ("k562", "rpe1"):
        for i in range(6):
            for k in range(4):
                weight = float(rng.random())
                rows.append(
                    {
                        "cell_type": cell_type,
                        "perturbation": f"GENE{i}",
                        "candidate": f"CAND{k}",
                        "cosine": 0.9 - 0.1 * k,
                        "keep_weight": weight,
                        "kept": weight > 0.5,
                    }
                )
    return pd.DataFrame(rows)


@pytest.fixture
def summary() -> dict:
    kinds = {**{a: "arm" for a in ARMS}, **{r: "reference" for r in REFERENCES}}
    return build_summary(_results(), kinds, retrieval=_retrieval(), n_boot=300, info={"seeds": 1})


def test_renderer_writes_three_files_with_embedded_figures(tmp_path, summary):
    paths = write_report(summary, tmp_path)
    assert {p.name for p in paths.values()} == {"summary.json", "report.md", "report.html"}
    page = paths["html"].read_text()
    assert page.count("data:image/png;base64,") == 3  # bars, scatter, selection
    assert "src='figures/" not in page  # self-contained: nothing linked from disk
    markdown = paths["markdown"].read_text()
    for name in ("metric_bars", "scatter_w1_w2", "selection"):
        assert f"figures/{name}.png" in markdown
        assert (tmp_path / "figures" / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
    assert "split-half" in markdown  # the noise floor is labelled as such
    for reference in REFERENCES:  # every reference's note comes from the reference registry
        assert REFERENCE_REGISTRY[reference].note in markdown


def test_metric_directions_come_from_the_registry(summary):
    assert summary["metrics"] == ["w1", "w2", "energy_gene", "sd_ratio", "pearson_delta"]  # registry order
    info = summary["metric_info"]
    assert info["sd_ratio"]["direction"] == "closer to 1"
    assert info["pearson_delta"]["direction"] == "higher"
    assert info["energy_gene"] == {
        "family": "gene_distribution",
        "direction": "lower",
        "description": METRIC_REGISTRY["energy_gene"].description,
    }
    # sd_ratio: every method has 0.9, so every pair is a tie, never a win for the higher value.
    sd = next(t for t in summary["paired_tests"] if t["metric"] == "sd_ratio" and t["arm"] == "ptrag")
    assert (sd["wins"], sd["losses"], sd["ties"]) == (0, 0, 30)


def test_every_table_number_is_in_summary_json(tmp_path, summary):
    paths = write_report(summary, tmp_path)
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
    shown = []
    for token in (t for cell in cells for t in re.split(r"[\s\[\](),]+", cell) if t):
        if re.fullmatch(r"-?\d+(\.\d+)?(e[-+]\d+)?", token):  # skips names, "n/a", "NaN"
            shown.append(token)
    assert len(shown) > 50
    missing = [t for t in shown if t not in known]
    assert not missing
    # And the aggregate numbers are the real means of the per-perturbation table.
    results = _results()
    for method in ARMS + REFERENCES:
        w1 = results[results.method == method]["w1"]
        assert stored["methods"][method]["metrics"]["w1"]["mean"] == pytest.approx(w1.mean())
        low, high = (stored["methods"][method]["metrics"]["w1"][k] for k in ("ci_low", "ci_high"))
        assert low < w1.mean() < high
    assert stored["methods"]["vanilla_rag"]["metrics"]["pearson_delta"]["nan_count"] == 1


def test_wilcoxon_in_summary_matches_scipy(summary):
    results = _results()
    tests = {(t["arm"], t["metric"]): t for t in summary["paired_tests"]}
    st = results[results.method == "st"].set_index("perturbation")
    for arm in ("vanilla_rag", "ptrag"):
        other = results[results.method == arm].set_index("perturbation")
        expected = wilcoxon(other["w1"], st.loc[other.index, "w1"])
        assert tests[(arm, "w1")]["p_value"] == pytest.approx(expected.pvalue, rel=1e-12)
        assert tests[(arm, "w1")]["n_pairs"] == 30
    assert tests[("vanilla_rag", "pearson_delta")]["n_pairs"] == 29  # the NaN pair is dropped
    assert tests[("ptrag", "w1")]["wins"] > tests[("ptrag", "w1")]["losses"]
    assert not any(t["arm"] in REFERENCES for t in summary["paired_tests"])


def test_selection_stats_and_neighbours(summary):
    retrieval = _retrieval()
    k562 = retrieval[retrieval.cell_type == "k562"]
    per_set = k562.groupby("perturbation")
    stats = summary["selection"]["k562"]
    assert stats["n_sets"] == 6
    assert stats["selection_rate_mean"] == pytest.approx(per_set["keep_weight"].mean().mean())
    assert stats["kept_count"] == per_set["kept"].sum().astype(int).tolist()
    assert len(summary["neighbours"]) == 3
    first = summary["neighbours"][0]
    cosines = [c["cosine"] for c in first["candidates"]]
    assert cosines == sorted(cosines, reverse=True) and len(cosines) == 4


def test_several_sets_per_query_are_counted_as_sets():
    retrieval = _retrieval()
    second = retrieval.copy()
    retrieval["set_id"], second["set_id"] = 0, 1
    second["kept"] = False
    stats = build_summary(_results(), {"st": "arm"}, retrieval=pd.concat([retrieval, second]), n_boot=50)[
        "selection"
    ]["rpe1"]
    assert stats["n_sets"] == 12
    assert sorted(stats["kept_count"])[:6] == [0] * 6
