"""`ptrag embed-genes`: neighbours, gene-list parsing and refusals (no annotation needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ptrag.cli.embed_cmd import read_gene_file
from ptrag.cli.main import main
from ptrag.embeddings.bundled import load_all_genes


def test_neighbors_prints_family_with_cosine(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["embed-genes", "--neighbors", "RPL7", "-k", "5"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith(f"Nearest genes to RPL7 in bundled ({len(load_all_genes())} genes, 384-d)")
    rows = [line.split() for line in lines[2:]]
    assert [row[0] for row in rows] == ["1", "2", "3", "4", "5"]
    assert all(row[1].startswith(("RPL", "RPS")) for row in rows)
    cosines = [float(row[2]) for row in rows]
    assert cosines == sorted(cosines, reverse=True) and 0.5 < cosines[-1] < 1.0


def test_neighbors_in_the_go_prior_are_the_genes_sharing_its_annotation(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["embed-genes", "--neighbors", "PSMA1", "--prior", "go", "-k", "5"]) == 0
    out = capsys.readouterr().out
    assert "in go (" in out and "128-d" in out
    rows = [line.split() for line in out.splitlines()[2:]]
    assert len(rows) == 5 and all(row[1].startswith("PSM") for row in rows)
    assert all(float(row[2]) > 0.8 for row in rows)


def test_neighbors_resolves_an_alias(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["embed-genes", "--neighbors", "AARS", "-k", "3"]) == 0
    assert "Nearest genes to AARS1 (for AARS)" in capsys.readouterr().out


def test_neighbors_unknown_gene_exits_2_with_message(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["embed-genes", "--neighbors", "NOTAGENE1"]) == 2
    assert "'NOTAGENE1'" in capsys.readouterr().err


def test_build_refuses_existing_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    genes = tmp_path / "genes.txt"
    genes.write_text("RPL7\n")
    out = tmp_path / "out.npz"
    out.write_bytes(b"keep me")
    assert main(["embed-genes", "--genes", str(genes), "--out", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert out.read_bytes() == b"keep me"
    assert main(["embed-genes", "--genes", str(genes), "--out", str(tmp_path / "x.csv")]) == 2
    assert main(["embed-genes", "--genes", str(genes)]) == 2


def test_read_gene_file_handles_header_comments_and_columns(tmp_path: Path) -> None:
    path = tmp_path / "genes.csv"
    path.write_text("symbol,score\n# a comment\nRPL7,1\n\nTP53,2  # trailing\nRPL7,3\nMED12\t4\n")
    assert read_gene_file(path) == ["RPL7", "TP53", "MED12"]
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n")
    with pytest.raises(Exception, match="holds no gene symbols"):
        read_gene_file(empty)


def test_coverage_reports_matches_and_missing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    genes = tmp_path / "genes.txt"
    genes.write_text("RPL7\nAARS\nkars\nNOTAGENE\n")
    assert main(["embed-genes", "--coverage", "--genes", str(genes)]) == 0
    out = capsys.readouterr().out
    assert (
        "3 of 4 genes have an embedding in bundled (75.0%: 1 exact, 0 case-insensitive, 2 via alias)" in out
    )
    assert "missing: 'NOTAGENE'" in out
    assert "AARS→AARS1" in out and "kars→KARS1" in out
    assert main(["embed-genes", "--coverage", "--all"]) == 2
