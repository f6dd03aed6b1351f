"""load_dataset on an AnnData object: in memory (dense, sparse, views) or backed, never via a file."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp

from ptrag.config import DataConfig
from ptrag.data.loading import load_dataset
from ptrag.errors import DataError


@pytest.fixture(autouse=True)
def no_file_writes(monkeypatch):
    """An in-memory AnnData must be read where it is: writing it anywhere fails the test."""

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("load_dataset wrote the AnnData to a file")

    monkeypatch.setattr(ad.AnnData, "write_h5ad", refuse)
    monkeypatch.setattr(ad.AnnData, "write", refuse)


ROWS = np.array([0, 5, 100, 287])


def _same(dataset, reference, rows=ROWS) -> None:
    assert dataset.genes == reference.genes
    assert dataset.columns == reference.columns
    assert dataset.obs.equals(reference.obs)
    assert dataset.warnings == reference.warnings
    assert dataset.expression.storage == reference.expression.storage
    np.testing.assert_array_equal(dataset.expression.rows(rows), reference.expression.rows(rows))


@pytest.mark.parametrize(
    ("x_kind", "n_hvg"),
    [("dense", 40), ("csr", None), ("csc", None), ("dense", None)],
    ids=["dense_obsm", "sparse_csr_x", "sparse_csc_x", "dense_x"],
)
def test_in_memory_matches_the_file(screen_factory, tmp_path, x_kind, n_hvg):
    adata = screen_factory(n_hvg=n_hvg)
    if x_kind != "dense":
        adata.X = sp.csr_matrix(adata.X) if x_kind == "csr" else sp.csc_matrix(adata.X)
    path = tmp_path / "screen.h5ad"
    ad.io.write_h5ad(path, adata)
    from_memory = load_dataset(adata)
    _same(from_memory, load_dataset(path))
    assert from_memory.source == "the AnnData object"


def test_sparse_obsm_and_views(screen_factory, tmp_path):
    adata = screen_factory()
    adata.obsm["X_hvg"] = sp.csr_matrix(adata.obsm["X_hvg"])
    path = tmp_path / "screen.h5ad"
    ad.io.write_h5ad(path, adata)
    _same(load_dataset(adata), load_dataset(path))
    keep = (adata.obs["cell_line"] != "rpe1").to_numpy()
    view = adata[keep]
    assert view.is_view
    dataset = load_dataset(view)
    assert dataset.n_cells == int(keep.sum()) and "rpe1" not in dataset.cell_types
    expected = view.obsm["X_hvg"][3].toarray()
    np.testing.assert_allclose(dataset.expression.rows(np.array([3])), expected, atol=5e-3)


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
def test_backed_anndata(screen_factory, tmp_path, sparse):
    adata = screen_factory(n_hvg=None, sparse=sparse)
    path = tmp_path / "screen.h5ad"
    ad.io.write_h5ad(path, adata)
    backed = ad.read_h5ad(path, backed="r")
    try:
        assert backed.isbacked
        dataset = load_dataset(backed, DataConfig(storage="float32"))
        _same(dataset, load_dataset(path, DataConfig(storage="float32")))
        assert dataset.source == f"the AnnData object backed by {path}"
    finally:
        backed.file.close()


def test_raw_counts_in_memory_are_preprocessed_like_the_file(screen_factory, tmp_path):
    adata = screen_factory(n_hvg=None, raw_counts=True, sparse=True, n_genes=80)
    path = tmp_path / "screen.h5ad"
    ad.io.write_h5ad(path, adata)
    config = DataConfig(n_top_genes=30)
    from_memory = load_dataset(adata, config)
    _same(from_memory, load_dataset(path, config))
    assert from_memory.normalisation.kind == "counts"


def _nan(adata: ad.AnnData) -> None:
    adata.obsm["X_hvg"][17, 3] = np.nan


def _no_controls(adata: ad.AnnData) -> None:
    adata.obs["gene"] = adata.obs["gene"].cat.rename_categories({"non-targeting": "scramble"})


def _duplicate_genes(adata: ad.AnnData) -> None:
    adata.var_names = ["GENE0", *adata.var_names[1:-1], "GENE0"]
    del adata.obsm["X_hvg"]


@pytest.mark.parametrize("change", [_nan, _no_controls, _duplicate_genes], ids=["nan", "no_controls", "dup"])
def test_bad_in_memory_data_gets_the_file_message(screen_factory, tmp_path, change):
    adata = screen_factory()
    change(adata)
    path = tmp_path / "bad.h5ad"
    ad.io.write_h5ad(path, adata)
    with pytest.raises(DataError) as from_file:
        load_dataset(path)
    with pytest.raises(DataError) as from_memory:
        load_dataset(adata)
    assert str(from_memory.value) == str(from_file.value)


def test_empty_and_wrong_inputs_are_named(screen_factory):
    adata = screen_factory()
    with pytest.raises(DataError, match="the AnnData object is empty: it has 0 cells"):
        load_dataset(adata[:0])
    with pytest.raises(DataError, match=r"Expected a path to an \.h5ad file or an anndata\.AnnData, got"):
        load_dataset({"X": 1})  # type: ignore[arg-type]
