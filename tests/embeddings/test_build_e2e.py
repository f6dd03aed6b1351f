"""End to end from the Debian packages: apt-get download → dpkg-deb -x → SQLite → text → MiniLM.

The packages are cached in ~/.cache/ptrag/annotation (or $PTRAG_ANNOTATION_CACHE), so only the first
run downloads (~50 MB). Needs apt-get and the Debian archive, as CI has; never skipped.
"""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import torch

import ptrag.embeddings.build as build_module
from ptrag.cli.main import main
from ptrag.embeddings import load_embeddings
from ptrag.embeddings.annotation import Annotation, locate_annotation
from ptrag.embeddings.build import build_embeddings
from ptrag.embeddings.bundled import load_bundled_embeddings, load_gene_table, load_go_terms
from ptrag.embeddings.text import texts_for_table
from ptrag.embeddings.types import GeneEmbeddings
from ptrag.errors import EmbeddingError


@pytest.fixture(scope="module")
def annotation() -> Annotation:
    torch.set_num_threads(1)
    return Annotation.open()  # fills the default cache with apt-get download + dpkg-deb -x if empty


@pytest.fixture(scope="module")
def fifty_genes() -> list[str]:
    table = load_gene_table()
    return list(table["symbol"].iloc[:: len(table) // 50][:50])


def _screen(path: Path, targets: list[str]) -> Path:
    labels = [g for g in targets for _ in range(2)] + ["non-targeting"] * 6
    obs = pd.DataFrame(
        {"gene": pd.Categorical(labels), "cell_line": "k562", "gem_group": "1"},
        index=[f"c{i}" for i in range(len(labels))],
    )
    X = np.random.default_rng(0).poisson(1.0, size=(len(labels), 8)).astype(np.float32)
    ad.AnnData(X=np.log1p(X), obs=obs, var=pd.DataFrame(index=[f"G{j}" for j in range(8)])).write_h5ad(path)
    return path


def test_embed_genes_from_debian_packages(
    annotation: Annotation,
    fifty_genes: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert annotation.org_path.name == "org.Hs.eg.sqlite" and annotation.go_path.name == "GO.sqlite"
    cache = tmp_path / "embedding-cache"
    monkeypatch.setenv("PTRAG_EMBEDDING_CACHE", str(cache))
    data = _screen(tmp_path / "screen.h5ad", fifty_genes)
    out = tmp_path / "genes.npz"
    argv = ["embed-genes", "--data", str(data), "--threads", "1", "--out", str(out), "--from-annotation"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "50 perturbation targets" in printed and "50 of 50 genes have an embedding" in printed
    assert "(0 from the shipped table, 50 built from the annotation)" in printed

    built = load_embeddings(out)
    assert sorted(built.symbols) == sorted(fifty_genes)
    assert built.dim == 384 and built.text_template == "v1"
    np.testing.assert_allclose(np.linalg.norm(built.matrix, axis=1), 1.0, atol=1e-5)
    with np.load(out) as stored:
        texts = {str(s): str(t) for s, t in zip(stored["symbols"], stored["texts"], strict=True)}
    assert all(texts[g].startswith(f"Gene {g}. ") for g in fifty_genes)
    assert sum("Biological process: " in texts[g] for g in fifty_genes) >= 40

    # The bundled table is reproducible from the packages: same texts, same vectors (float16 aside).
    bundled = load_bundled_embeddings()
    cosines = [float(built.vector(g) @ bundled.vector(g)) for g in fifty_genes]
    assert min(cosines) > 0.999
    table = load_gene_table().set_index("symbol").loc[fifty_genes]
    rows = zip(fifty_genes, table["full_name"], table["go_ids"], strict=True)
    assert texts_for_table(rows, load_go_terms()) == [texts[g] for g in fifty_genes]

    # A second build of the same genes is served from the cache without running the encoder.
    def no_encoding(*args: object, **kwargs: object) -> np.ndarray:
        raise AssertionError("the encoder ran although every text was cached")

    monkeypatch.setattr(build_module, "encode_texts", no_encoding)
    again, _ = build_embeddings(annotation, fifty_genes, progress=False)
    np.testing.assert_array_equal(again.matrix, np.stack([built.vector(g) for g in fifty_genes]))


def test_unknown_genes_are_listed(annotation: Annotation, tmp_path: Path) -> None:
    with pytest.raises(EmbeddingError, match=r"2 requested gene\(s\).*'NOTAGENE1', 'NOTAGENE2'"):
        build_embeddings(annotation, ["RPL7", "NOTAGENE1", "NOTAGENE2"], cache_dir=tmp_path, progress=False)


def test_annotation_dir_without_files_is_explained(tmp_path: Path) -> None:
    with pytest.raises(EmbeddingError, match=r"does not contain org\.Hs\.eg\.sqlite or GO\.sqlite"):
        locate_annotation(tmp_path)


def test_genes_the_shipped_table_lacks_are_built_from_the_annotation(
    annotation: Annotation, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Pretend the shipped table lacks TP53 and MYC (as a newer annotation's new genes would be).
    full = load_bundled_embeddings()
    keep = [s for s in full.symbols if s not in ("TP53", "MYC")]
    partial = GeneEmbeddings(tuple(keep), full.matrix[[full.index(s) for s in keep]], "bundled", "v1")
    monkeypatch.setattr(build_module, "load_bundled_embeddings", lambda: partial)
    monkeypatch.setenv("PTRAG_EMBEDDING_CACHE", str(tmp_path / "cache"))
    embeddings, texts, built = build_module.embed_genes(
        ["RPL7", "TP53", "MYC"], options=build_module.EncodeOptions(threads=1, progress=False)
    )
    assert built == ["TP53", "MYC"] and embeddings.symbols == ("RPL7", "TP53", "MYC")
    assert "2 gene(s) are not in the bundled table of every protein-coding gene: 'TP53', 'MYC'" in caplog.text
    np.testing.assert_array_equal(embeddings.vector("RPL7"), full.vector("RPL7"))
    for gene in ("TP53", "MYC"):  # rebuilt from the same annotation: the shipped vector, float16 aside
        assert float(embeddings.vector(gene) @ full.vector(gene)) > 0.999
    assert texts[1].startswith("Gene TP53. Tumor protein p53.")
