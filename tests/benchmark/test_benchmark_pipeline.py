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


@pytest.fixture(scope="module")
def benchmark_out(tmp_path_factory):
    from ptrag.simulation import simulate

    root = tmp_path_factory.mktemp("bench")
    simulate("tiny", seed=0, out_dir=root / "screen")
    out = root / "out"
    summary = run_benchmark(
        out, data_dir=root / "screen", arms=("st", "ptrag"), seeds=2, overrides=SMALL, progress=False
    )
    return root, out, summary


def test_writes_report_files_and_every_arm_and_reference(benchmark_out) -> None:
    _, out, summary = benchmark_out
    for name in ("summary.json", "report.md", "report.html", "results_all.csv"):
        assert (out / name).is_file(), name
    assert list(summary["methods"]) == [
        "st",
        "ptrag",
        "control",
        "train_mean",
        "perturb_shift",
        "knn_shift",
        "linear",
        "noise_floor",
    ]
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 3
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["methods"]["ptrag"]["metrics"]["energy_gene"]["mean"] == pytest.approx(
        summary["methods"]["ptrag"]["metrics"]["energy_gene"]["mean"]
    )
    results = pd.read_csv(out / "results_all.csv")
    for name in ("perturb_shift", "knn_shift", "linear"):
        rows = results[results["method"] == name]
        assert len(rows) == summary["info"]["data"]["n_test_groups"], name
        mean = summary["methods"][name]["metrics"]["energy_pca"]["mean"]
        assert mean == pytest.approx(rows["energy_pca"].mean())
        assert summary["methods"][name]["note"] in (out / "report.md").read_text()


def test_arms_share_split_steps_and_seeds(benchmark_out) -> None:
    _, out, summary = benchmark_out
    runs = summary["info"]["per_seed"]
    assert sorted((r["arm"], r["seed"]) for r in runs) == [("ptrag", 0), ("ptrag", 1), ("st", 0), ("st", 1)]
    for arm in ("st", "ptrag"):
        for seed in (0, 1):
            config = (out / "runs" / f"{arm}-seed{seed}" / "config.toml").read_text()
            assert "max_steps = 20" in config and f"seed = {seed}" in config
            assert (out / "runs" / f"{arm}-seed{seed}" / "split.toml").read_text() == (
                out / "runs" / f"st-seed{seed}" / "split.toml"
            ).read_text()


def test_paired_tests_cover_every_test_perturbation(benchmark_out) -> None:
    root, _, summary = benchmark_out
    dataset = load_dataset(root / "screen" / "data.h5ad")
    n_test = len(Split.read(root / "screen" / "split.toml").groups(dataset, "test"))
    tests = pd.DataFrame(summary["paired_tests"])
    energy = tests[(tests["arm"] == "ptrag") & (tests["metric"] == "energy_gene")].iloc[0]
    assert energy["n_pairs"] == n_test
    assert energy["wins"] + energy["losses"] + energy["ties"] == n_test
    assert 0.0 <= energy["p_value"] <= 1.0


def test_reference_ordering_is_sane(benchmark_out) -> None:
    _, _, summary = benchmark_out
    methods = summary["methods"]
    # The split-half noise floor agrees with itself far better than unchanged controls do.
    assert (
        methods["noise_floor"]["metrics"]["pearson_delta"]["mean"]
        > methods["control"]["metrics"]["pearson_delta"]["mean"]
    )
    assert summary["selection"], "PT-RAG's selection statistics per cell line are missing"


def test_predict_writes_the_benchmarks_reference_shifts_and_evaluate_scores_them(benchmark_out, capsys):
    import numpy as np

    from ptrag.cli.main import main
    from ptrag.evaluation import REFERENCE_FILE, ReferenceShifts

    root, out, summary = benchmark_out
    pred_dir = root / "predicted"
    run_dir, data = out / "runs" / "st-seed0", root / "screen" / "data.h5ad"
    assert main(["predict", str(run_dir), "--data", str(data), "--out", str(pred_dir), "--no-progress"]) == 0
    written = ReferenceShifts.load(pred_dir / REFERENCE_FILE)
    benchmark = ReferenceShifts.load(out / "predictions" / "st-seed0" / REFERENCE_FILE)
    assert written.conditions == benchmark.conditions
    assert len(written.conditions) == summary["info"]["data"]["n_test_groups"]
    for name in ("train_mean", "perturb_shift", "knn_shift", "linear"):
        np.testing.assert_array_equal(written.shifts[name], benchmark.shifts[name])
    assert set(written.details["source"]) >= {"other_cell_types", "neighbours", "ridge"}
    capsys.readouterr()
    assert main(["evaluate", str(pred_dir), "--no-de"]) == 0
    comparison = pd.read_csv(pred_dir / "eval" / "comparison.csv").set_index("method")
    # Same real cells, same PCA seed, same control draws: the benchmark's reference scores exactly.
    for name in ("control", "perturb_shift", "linear"):
        assert comparison.loc[name, "w1"] == pytest.approx(summary["methods"][name]["metrics"]["w1"]["mean"])
