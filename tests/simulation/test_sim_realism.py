"""Realism of the tiny preset, measured with the real bundled gene table and embeddings."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ptrag.cli.main import main
from ptrag.simulation import SimulationResult, realism_report
from ptrag.simulation.realism import energy_distance


@pytest.fixture(scope="module")
def report(tiny_screen: SimulationResult) -> dict[str, Any]:
    return realism_report(tiny_screen.out_dir)


def test_same_complex_pairs_correlate_random_pairs_do_not(report: dict[str, Any]) -> None:
    metrics = report["metrics"]
    assert metrics["pearson_same_complex"] >= 0.4
    assert abs(metrics["pearson_other_pairs"]) <= 0.1
    assert report["details"]["n_same_complex_pairs"] >= 15


def test_embedding_similarity_relates_to_response_only_partly(report: dict[str, Any]) -> None:
    assert 0.1 <= report["metrics"]["embedding_spearman"] <= 0.6


def test_response_is_moderately_shared_across_lines(report: dict[str, Any]) -> None:
    assert 0.3 <= report["metrics"]["cross_line_pearson"] <= 0.8
    assert report["details"]["n_cross_line_pairs"] >= 8


def test_near_null_share(report: dict[str, Any]) -> None:
    assert 0.2 <= report["metrics"]["near_null_fraction"] <= 0.5


def test_noise_floor_well_below_effect(report: dict[str, Any]) -> None:
    details = report["details"]
    assert report["metrics"]["noise_floor_ratio"] <= 0.5
    assert details["noise_floor_energy_median"] < 0.5 * details["control_vs_perturbed_energy_median"]


def test_energy_distance_helper() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(300, 3)), rng.normal(size=(300, 3))
    shifted = b + np.array([2.0, 0.0, 0.0])
    assert abs(energy_distance(a, b)) < 0.05
    assert energy_distance(a, shifted) > 1.0


def test_cli_writes_screen_and_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "screen"
    assert (
        main(["simulate", "--preset", "tiny", "--seed", "2", "--out", str(out), "--report", "--quiet"]) == 0
    )
    printed = capsys.readouterr().out
    assert "pearson_same_complex" in printed and "near_null_fraction" in printed
    saved = json.loads((out / "realism.json").read_text())
    assert saved["preset"] == "tiny" and saved["seed"] == 2
    assert set(saved["metrics"]) == set(saved["targets"])
    for name in ("data.h5ad", "split.toml", "truth.parquet", "perturbations.csv"):
        assert (out / name).is_file()
    assert main(["simulate", "--preset", "tiny", "--out", str(out), "--quiet"]) == 2
    assert "overwrite" in capsys.readouterr().err
