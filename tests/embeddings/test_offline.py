"""The shipped table covers every protein-coding gene: embed-genes works with no network at all.

The fetch path is made to fail (no apt-get, an empty annotation cache, and Annotation.open
refusing), so any attempt to reach the Debian packages would fail these tests.
"""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import ptrag.embeddings.annotation as annotation_module
from ptrag.cli.main import main
from ptrag.embeddings import load_embeddings
from ptrag.embeddings.bundled import bundled_texts, load_all_genes, load_bundled_embeddings


@pytest.fixture
def air_gapped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("tried to fetch or open the annotation packages")

    monkeypatch.setattr(annotation_module.subprocess, "run", no_network)
    monkeypatch.setattr(annotation_module.Annotation, "open", classmethod(no_network))
    monkeypatch.setenv("PTRAG_ANNOTATION_CACHE", str(tmp_path / "no-annotation"))
    monkeypatch.setenv("PTRAG_EMBEDDING_CACHE", str(tmp_path / "no-embedding-cache"))


@pytest.mark.parametrize("gene", ["TP53", "MYC", "GAPDH"])
def test_neighbors_of_genes_outside_the_old_table(air_gapped, capsys, gene) -> None:
    assert main(["embed-genes", "--neighbors", gene, "-k", "5"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    total = len(load_all_genes())
    assert lines[0] == f"Nearest genes to {gene} in bundled ({total} genes, 384-d):"
    rows = [line.split() for line in lines[2:]]
    assert len(rows) == 5 and gene not in [row[1] for row in rows]
    cosines = [float(row[2]) for row in rows]
    assert cosines == sorted(cosines, reverse=True) and 0.5 < cosines[-1] < 1.0


def _screen(path: Path, targets: list[str]) -> Path:
    labels = [g for g in targets for _ in range(2)] + ["non-targeting"] * 4
    obs = pd.DataFrame(
        {"gene": pd.Categorical(labels), "cell_line": "k562"}, index=[f"c{i}" for i in range(len(labels))]
    )
    x = np.zeros((len(labels), 3), dtype=np.float32)
    ad.AnnData(X=x, obs=obs, var=pd.DataFrame(index=["A", "B", "C"])).write_h5ad(path)
    return path


def test_embed_data_takes_the_shipped_vectors_offline(air_gapped, tmp_path, capsys) -> None:
    targets = ["TP53", "MYC", "GAPDH", "RPL7", "AARS", "brca1"]  # an old alias and a lower-case name
    out = tmp_path / "genes.npz"
    assert main(["embed-genes", "--data", str(_screen(tmp_path / "s.h5ad", targets)), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "6 perturbation targets" in printed and "6 of 6 genes have an embedding" in printed
    assert "(6 from the shipped table, 0 built from the annotation)" in printed
    built, bundled = load_embeddings(out), load_bundled_embeddings()
    assert sorted(built.symbols) == sorted(targets)
    official = {"AARS": "AARS1", "brca1": "BRCA1"}
    for gene in targets:
        np.testing.assert_array_equal(built.vector(gene), bundled.vector(official.get(gene, gene)))
    with np.load(out) as stored:
        texts = dict(zip(stored["symbols"], stored["texts"], strict=True))
    assert texts["TP53"] == bundled_texts(["TP53"])[0]
    assert texts["TP53"].startswith("Gene TP53. Tumor protein p53.")
    assert texts["AARS"].startswith("Gene AARS1. ")


def test_an_unknown_gene_is_named_and_can_be_skipped(tmp_path, monkeypatch, capsys, caplog) -> None:
    def no_apt(command: list[str], **_kwargs: object) -> None:
        raise FileNotFoundError(command[0])  # what an air-gapped node without apt-get does

    monkeypatch.setattr(annotation_module.subprocess, "run", no_apt)
    monkeypatch.setenv("PTRAG_ANNOTATION_CACHE", str(tmp_path / "no-annotation"))
    genes = tmp_path / "genes.txt"
    genes.write_text("MYC\nNOTAGENE7\n")
    out = tmp_path / "g.npz"
    assert main(["embed-genes", "--genes", str(genes), "--out", str(out), "--skip-unknown"]) == 0
    assert "1 gene(s) are not in the bundled table of every protein-coding gene: 'NOTAGENE7'" in caplog.text
    assert load_embeddings(out).symbols == ("MYC",)
    assert "1 of 2 genes have an embedding" in capsys.readouterr().out
    assert "Leaving out 'NOTAGENE7'" in caplog.text and "apt-get" in caplog.text
