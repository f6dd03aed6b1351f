"""``ptrag screen``: a genome-wide in-silico screen of the tiny run, its files and its errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from ptrag.cli.main import main
from ptrag.embeddings import load_embeddings

from .cli_helpers import fails, snapshot


def screen_args(run: Path, data: Path, out: Path, *extra: str) -> list[str]:
    return [
        "screen",
        str(run),
        "--data",
        str(data),
        "--cell-type",
        "k562",
        "--out",
        str(out),
        "--no-progress",
        *extra,
    ]


def test_screen_ranks_every_gene_with_an_embedding_by_default(screen, run_dir, tmp_path, capsys) -> None:
    out = tmp_path / "all"
    assert main(screen_args(run_dir, screen / "data.h5ad", out)) == 0
    table = pd.read_csv(out / "screen.csv")
    symbols = load_embeddings("bundled").symbols
    assert len(table) == len(symbols) == 20_598
    assert set(table["perturbation"]) == set(symbols)
    assert table["rank"].tolist() == list(range(1, len(table) + 1))
    assert np.all(np.diff(table["effect_size"].to_numpy()) <= 0)
    assert {"MYC", "TP53", "GAPDH"} <= set(table["perturbation"])
    bulk = ad.read_h5ad(out / "screen_pseudobulk.h5ad")
    assert list(bulk.obs_names) == table["perturbation"].tolist()
    np.testing.assert_allclose(bulk.obs["effect_size"], table["effect_size"], rtol=1e-5)
    assert (out / "screen.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    printed = capsys.readouterr().out
    assert "screened 20598 genes in k562" in printed
    assert f"({int(table['low_evidence'].sum())} low-evidence)" in printed


def test_screen_of_listed_genes_keeps_cells_on_request(screen, run_dir, tmp_path) -> None:
    out = tmp_path / "three"
    argv = screen_args(
        run_dir, screen / "data.h5ad", out, "--genes", "MYC,TP53,GAPDH", "--n-cells", "20", "--cells"
    )
    assert main(argv) == 0
    assert sorted(pd.read_csv(out / "screen.csv")["perturbation"]) == ["GAPDH", "MYC", "TP53"]
    cells = ad.read_h5ad(out / "screen_cells.h5ad")
    assert cells.obs["target_gene"].value_counts().to_dict() == {"GAPDH": 20, "MYC": 20, "TP53": 20}


def test_screen_errors_are_one_line_and_keep_an_old_output(screen, run_dir, tmp_path, capsys) -> None:
    out = tmp_path / "old"
    assert main(screen_args(run_dir, screen / "data.h5ad", out, "--genes", "MYC")) == 0
    before = snapshot(out)
    argv = screen_args(run_dir, screen / "data.h5ad", out, "--genes", "MYC", "--overwrite")
    argv[argv.index("--cell-type") + 1] = "hela"
    assert "'hela'" in fails(capsys, argv)
    assert "--n-cells must be at least 1" in fails(capsys, [*argv, "--n-cells", "0"])
    assert "genes.txt does not exist" in fails(capsys, [*argv[:-3], "--genes", str(tmp_path / "genes.txt")])
    assert "already exists" in fails(
        capsys, screen_args(run_dir, screen / "data.h5ad", out, "--genes", "TP53")
    )
    assert snapshot(out) == before


@pytest.mark.parametrize("value", ["nan", "5", "-1.5"])
def test_a_low_evidence_cosine_outside_minus_one_to_one_is_one_line(
    screen, run_dir, tmp_path, capsys, value
) -> None:
    extra = ("--genes", "MYC", "--low-evidence-cosine", value)
    line = fails(capsys, screen_args(run_dir, screen / "data.h5ad", tmp_path / "s", *extra))
    assert f"must be a cosine between -1 and 1, got {float(value)}." in line
    assert not (tmp_path / "s").exists()


def test_a_full_disk_is_refused_before_the_screen(screen, run_dir, tmp_path, capsys, monkeypatch) -> None:
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr("ptrag.io.shutil.disk_usage", lambda path: usage._replace(free=10))
    monkeypatch.setattr("ptrag.api.Model.screen", lambda *a, **k: pytest.fail("screened"))
    line = fails(capsys, screen_args(run_dir, screen / "data.h5ad", tmp_path / "s"))
    # Every gene with an embedding: 20,598 pseudobulk rows (X and delta) of the run's genes.
    assert "the screen needs about" in line and "has 10 bytes free" in line
