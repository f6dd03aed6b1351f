"""`ptrag benchmark` end to end on the tiny screen: same split/steps/seeds, references, tests, report."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from ptrag.benchmark.pipeline import run_benchmark
from ptrag.data.loading import load_dataset
from ptrag.data.splits import Split

SMALL = [
    "model.hidden_dim=16",
    "model.n_layers=1",
    "model.n_heads=2",
    "retrieval.top_k=4",
    "train.max_steps=20",
    "train.sets_per_batch=4",
    "train.cell_set_len=16",
    "train.val_every=1000",
    "train.num_threads=1",
]


SPLITS = {"fewshot": "split.toml", "unseen": "split_unseen.toml"}
SIMPLE_REFERENCES = [
    "control", "train_mean", "perturb_shift", "knn_shift", "linear", "linear_text", "linear_go",
    "linear_coexpression",
]


@pytest.fixture(scope="module")
def benchmark_out(tiny_screen, tmp_path_factory):
    """The shared tiny screen (few-shot and unseen splits) benchmarked with st and ptrag, 2 seeds."""
    root = tmp_path_factory.mktemp("bench")
    (root / "screen").symlink_to(tiny_screen)
    out = root / "out"
    summary = run_benchmark(
        out, data_dir=root / "screen", arms=("st", "ptrag"), seeds=2, overrides=SMALL, progress=False
    )
    return root, out, summary


def _test_groups(root, split_name):
    dataset = load_dataset(root / "screen" / "data.h5ad")
    return Split.read(root / "screen" / SPLITS[split_name]).groups(dataset, "test")


def test_one_section_per_split_with_every_arm_and_reference(benchmark_out) -> None:
    root, out, summary = benchmark_out
    for name in ("summary.json", "report.md", "report.html", "results_all.csv"):
        assert (out / name).is_file(), name
    assert "its own mean shift on real control cells" in (out / "report.html").read_text()
    assert list(summary["splits"]) == ["fewshot", "unseen"]
    assert [summary["splits"][s]["label"] for s in SPLITS] == ["few-shot", "unseen"]
    results = pd.read_csv(out / "results_all.csv")
    assert results.columns[0] == "split" and set(results["split"]) == set(SPLITS)
    on_disk = json.loads((out / "summary.json").read_text())
    for split_name, section in summary["splits"].items():
        assert list(section["methods"]) == [
            "st", "ptrag", *SIMPLE_REFERENCES, "evidence_only", "noise_floor", "oracle_mean_shift",
            "st_mean_on_controls", "ptrag_mean_on_controls",
        ]
        assert section["methods"]["st_mean_on_controls"]["kind"] == "diagnostic"
        # The simulated screen's truth: the mean-shift oracle (tiny has no basal states: no per-cell one).
        assert section["methods"]["oracle_mean_shift"]["kind"] == "oracle"
        assert {row["baseline"] for row in section["own_mean_tests"]} == {
            "st_mean_on_controls", "ptrag_mean_on_controls"
        }
        n_test = len(_test_groups(root, split_name))
        assert section["info"]["n_test_groups"] == n_test
        rows = results[results["split"] == split_name]
        for name in ("st", "perturb_shift", "knn_shift", "linear"):
            scored = rows[rows["method"] == name]
            assert len(scored) == n_test, (split_name, name)
            mean = section["methods"][name]["metrics"]["energy_pca"]["mean"]
            assert mean == pytest.approx(scored["energy_pca"].mean())
        assert on_disk["splits"][split_name]["methods"]["ptrag"]["metrics"]["energy_gene"][
            "mean"
        ] == pytest.approx(section["methods"]["ptrag"]["metrics"]["energy_gene"]["mean"])
    # References are computed per split: their training sets differ, so their scores do too.
    linear = [summary["splits"][s]["methods"]["linear"]["metrics"]["pearson_delta"]["mean"] for s in SPLITS]
    assert linear[0] != linear[1]


def test_every_method_gets_its_per_gene_spread_averaged_over_seeds(benchmark_out) -> None:
    import anndata as ad

    from ptrag.evaluation.pair import ConditionPair
    from ptrag.evaluation.spread import gene_spread, mean_spread, spread_summary

    _, out, summary = benchmark_out
    section = summary["splits"]["fewshot"]
    assert set(section["gene_spread"]) == set(section["methods"])
    tables = []
    for seed in (0, 1):
        directory = out / "predictions" / "fewshot" / f"st-seed{seed}"
        pred, real = (ad.read_h5ad(directory / f"adata_{side}.h5ad") for side in ("pred", "real"))
        tables.append(gene_spread(ConditionPair(pred, real, "target_gene", "cell_type", "non-targeting")))
    expected = spread_summary(mean_spread(tables))
    stored = section["gene_spread"]["st"]
    for part in ("all", "moved", "other"):
        assert stored[part] == pytest.approx(expected[part], rel=1e-6)
    assert stored["n_conditions"] == section["info"]["n_test_groups"]
    assert "Per-gene spread: predicted SD / real SD" in (out / "report.md").read_text()


def test_unseen_split_holds_test_perturbations_out_of_training_everywhere(benchmark_out) -> None:
    root, out, _ = benchmark_out
    dataset = load_dataset(root / "screen" / "data.h5ad")
    split = Split.read(out / "runs" / "unseen" / "st-seed0" / "split.toml")
    assert split == Split.read(root / "screen" / "split_unseen.toml")
    test = {p for _, p in split.groups(dataset, "test")}
    trained = {p for _, p in split.groups(dataset, "train")}
    assert test and not test & trained
    fewshot = Split.read(out / "runs" / "fewshot" / "st-seed0" / "split.toml")
    fewshot_test = {p for _, p in fewshot.groups(dataset, "test")}
    assert fewshot_test & {p for _, p in fewshot.groups(dataset, "train")}  # few-shot: seen elsewhere


def test_arms_share_split_steps_and_seeds(benchmark_out) -> None:
    _, out, summary = benchmark_out
    for split_name in SPLITS:
        runs = summary["info"]["runs"][split_name]["per_seed"]
        assert sorted((r["arm"], r["seed"]) for r in runs) == [
            ("ptrag", 0),
            ("ptrag", 1),
            ("st", 0),
            ("st", 1),
        ]
        for arm in ("st", "ptrag"):
            for seed in (0, 1):
                run_dir = out / "runs" / split_name / f"{arm}-seed{seed}"
                config = (run_dir / "config.toml").read_text()
                assert "max_steps = 20" in config and f"seed = {seed}" in config
                assert (run_dir / "split.toml").read_text() == (
                    out / "runs" / split_name / f"st-seed{seed}" / "split.toml"
                ).read_text()
        # Seeds are averaged per perturbation: the arm's mean is the mean of its per-seed means.
        for arm in ("st", "ptrag"):
            per_seed = [r["mean_metrics"]["w1"] for r in runs if r["arm"] == arm]
            mean = summary["splits"][split_name]["methods"][arm]["metrics"]["w1"]["mean"]
            assert mean == pytest.approx(sum(per_seed) / len(per_seed))


def test_paired_comparisons_against_st_and_every_simple_reference(benchmark_out) -> None:
    from scipy.stats import wilcoxon

    root, out, summary = benchmark_out
    results = pd.read_csv(out / "results_all.csv")
    for split_name, section in summary["splits"].items():
        n_test = len(_test_groups(root, split_name))
        tests = pd.DataFrame(section["paired_tests"])
        compared = set(zip(tests["arm"], tests["baseline"], strict=True))
        assert compared == {("ptrag", "st")} | {
            (a, r) for a in ("st", "ptrag") for r in [*SIMPLE_REFERENCES, "evidence_only"]
        }
        rows = results[results["split"] == split_name].set_index(["cell_type", "perturbation"])
        for metric_name, sign in (("energy_gene", -1.0), ("pearson_delta", 1.0)):  # lower / higher is better
            table = tests[(tests["metric"] == metric_name)].set_index(["arm", "baseline"])
            assert (table["n_pairs"] == n_test).all()
            assert ((table["wins"] + table["losses"] + table["ties"]) == n_test).all()
            values = {m: rows[rows["method"] == m][metric_name] for m in ("st", "ptrag", "control", "linear")}
            for arm, comparator in (("ptrag", "st"), ("ptrag", "linear"), ("st", "control")):
                a, b = values[arm], values[comparator].loc[values[arm].index]
                row = table.loc[(arm, comparator)]
                assert row["p_value"] == pytest.approx(wilcoxon(a, b).pvalue, rel=1e-9)
                gain = sign * (a - b).mean()  # in the metric's own units
                assert row["mean_improvement"] == pytest.approx(gain)
        for metric_name, best in section["best_reference"].items():
            means = {
                r: section["methods"][r]["metrics"][metric_name]["mean"]
                for r in [*SIMPLE_REFERENCES, "evidence_only"]
            }
            if metric_name in ("energy_gene", "w1"):
                assert best["name"] == min(means, key=means.get)
            if metric_name == "pearson_delta":
                assert best["name"] == max(means, key=means.get)
        arms = [h["arm"] for h in summary["headline"] if h["split"] == split_name]
        assert arms == ["st", "ptrag"]
        sentence = next(
            h["sentence"] for h in summary["headline"] if h["split"] == split_name and h["arm"] == "ptrag"
        )
        assert sentence.startswith("ptrag is ") and " ST on " in sentence
        assert section["best_reference"]["pearson_delta"]["name"] in sentence
    assert summary["warnings"] and "not enough" in summary["warnings"][0]  # 2 seeds < 3


def test_retrieval_at_work_and_report_structure(benchmark_out, capsys) -> None:
    from ptrag.cli.benchmark_cmd import print_summary

    _, out, summary = benchmark_out
    for section in summary["splits"].values():
        assert list(section["retrieval"]) == ["ptrag"]  # st has no selector
        entry = section["retrieval"]["ptrag"]
        assert set(entry["training"]) == {"seed0", "seed1"} and entry["training"]["seed0"]["step"]
        assert 0.0 <= entry["kept_fraction"] <= 1.0
        assert entry["collapsed"] == (entry["kept_fraction"] < 0.01)
        assert set(entry["prediction"]) == set(summary["info"]["data"]["cell_types"])
        assert entry["examples"] and {"candidate", "cosine"} <= set(entry["examples"][0])
    page = (out / "report.html").read_text()
    body = page[page.index("<body>") + len("<body>") :].lstrip()
    assert body.startswith("<h1>")
    assert body.index("<table class='board'>") < body.index("<div class='headline'>")
    assert page.index("Few-shot split") < page.index("Unseen split") < page.index("Run details")
    assert page.count("<table class='board'>") == 2  # one scoreboard per split
    assert page.count("Retrieval at work") == 2
    assert page.count("data:image/png;base64,") == 5  # the headline figure; metrics and selection per split
    capsys.readouterr()
    print_summary(summary)
    printed = capsys.readouterr().out
    assert "== few-shot split" in printed and "== unseen split" in printed
    assert printed.count("- ptrag is ") == 2


def test_predict_writes_the_benchmarks_reference_shifts_and_evaluate_scores_them(benchmark_out, capsys):
    import numpy as np

    from ptrag.cli.main import main
    from ptrag.evaluation import REFERENCE_FILE, ReferenceShifts

    root, out, summary = benchmark_out
    pred_dir = root / "predicted"
    run_dir, data = out / "runs" / "fewshot" / "st-seed0", root / "screen" / "data.h5ad"
    assert main(["predict", str(run_dir), "--data", str(data), "--out", str(pred_dir), "--no-progress"]) == 0
    written = ReferenceShifts.load(pred_dir / REFERENCE_FILE)
    benchmark = ReferenceShifts.load(out / "predictions" / "fewshot" / "st-seed0" / REFERENCE_FILE)
    assert written.conditions == benchmark.conditions
    assert len(written.conditions) == summary["splits"]["fewshot"]["info"]["n_test_groups"]
    for name in ("train_mean", "perturb_shift", "knn_shift", "linear"):
        np.testing.assert_array_equal(written.shifts[name], benchmark.shifts[name])
    assert set(written.details["source"]) >= {"other_cell_types", "neighbours", "ridge"}
    capsys.readouterr()
    assert main(["evaluate", str(pred_dir), "--no-de"]) == 0
    comparison = pd.read_csv(pred_dir / "eval" / "comparison.csv").set_index("method")
    # Same real cells, same PCA seed, same control draws: the benchmark's reference scores exactly.
    for name in ("control", "perturb_shift", "linear"):
        expected = summary["splits"]["fewshot"]["methods"][name]["metrics"]["w1"]["mean"]
        assert comparison.loc[name, "w1"] == pytest.approx(expected)
