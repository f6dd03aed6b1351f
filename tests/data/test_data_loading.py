"""load_dataset: detection, expression sources, storage and preprocessing of raw counts."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import scipy.sparse as sp

from ptrag.config import DataConfig
from ptrag.data.dataset import BATCH, CELL_TYPE, PERTURBATION
from ptrag.data.expression import DenseExpression, SparseExpression, choose_storage
from ptrag.data.h5read import ExpressionSource
from ptrag.data.loading import load_dataset
from ptrag.errors import DataError


def test_replogle_schema_is_detected(screen_factory, write_screen):
    adata = screen_factory()
    dataset = load_dataset(write_screen(adata))
    assert dataset.columns.perturbation == "gene"
    assert dataset.columns.cell_type == "cell_line"
    assert dataset.columns.batch == "gem_group"
    assert dataset.control_label == "non-targeting"
    assert dataset.cell_types == ["hepg2", "jurkat", "k562", "rpe1"]
    assert dataset.n_cells == adata.n_obs == 288
    # X_hvg wins over X and its columns are named by var.highly_variable, in var order.
    expected_genes = tuple(adata.var_names[adata.var["highly_variable"].to_numpy()])
    assert dataset.genes == expected_genes and dataset.n_genes == 40
    assert "X_hvg" in dataset.expression_source
    assert list(dataset.obs.index[:3]) == ["cell0", "cell1", "cell2"]
    for column in (PERTURBATION, CELL_TYPE, BATCH):
        assert dataset.obs[column].dtype == "category"
    assert int(dataset.is_control.sum()) == 4 * 24
    assert dataset.perturbations("hepg2") == ["G1", "G2", "G3", "G4", "G5", "G6"]
    np.testing.assert_allclose(
        dataset.expression.rows(np.array([5, 0, 5])), adata.obsm["X_hvg"][[5, 0, 5]], rtol=2e-3, atol=1e-3
    )


@pytest.mark.parametrize(
    ("renames", "overrides"),
    [
        ({"gene": "target_gene", "cell_line": "cell_type", "gem_group": "batch"}, {}),
        ({"gene": "condition", "cell_line": "celltype"}, {}),
        (
            {"gene": "guide_target", "cell_line": "line"},
            {"perturbation_column": "guide_target", "cell_type_column": "line"},
        ),
    ],
)
def test_aliases_and_overrides(screen_factory, write_screen, renames, overrides):
    adata = screen_factory(control_label="ctrl")
    adata.obs = adata.obs.rename(columns=renames)
    dataset = load_dataset(write_screen(adata), DataConfig(**overrides))
    assert dataset.columns.perturbation == renames["gene"]
    assert dataset.columns.cell_type == renames["cell_line"]
    assert dataset.control_label == "ctrl"
    assert dataset.cell_types == ["hepg2", "jurkat", "k562", "rpe1"]


def test_no_batch_column_gives_one_batch(screen_factory, write_screen):
    adata = screen_factory()
    del adata.obs["gem_group"]
    dataset = load_dataset(write_screen(adata))
    assert dataset.columns.batch is None
    assert list(dataset.obs[BATCH].cat.categories) == ["0"]


def test_control_label_override(screen_factory, write_screen):
    adata = screen_factory(control_label="safe-targeting")
    dataset = load_dataset(write_screen(adata), DataConfig(control_label="safe-targeting"))
    assert int(dataset.is_control.sum()) == 96


def test_x_is_used_without_x_hvg(screen_factory, write_screen):
    adata = screen_factory(n_hvg=None)
    dataset = load_dataset(write_screen(adata))
    assert dataset.genes == tuple(adata.var_names)
    assert dataset.expression_source.startswith("X")


def test_obsm_names_from_uns(screen_factory, write_screen):
    adata = screen_factory()
    adata.var["highly_variable"] = False  # no longer names the 40 columns
    adata.uns["X_hvg_genes"] = np.array([f"H{i}" for i in range(40)])
    dataset = load_dataset(write_screen(adata))
    assert dataset.genes[:2] == ("H0", "H1")


@pytest.mark.parametrize("sparse", [False, True])
def test_storage_modes_give_the_same_values(screen_factory, write_screen, sparse):
    adata = screen_factory(n_hvg=None, sparse=sparse)
    path = write_screen(adata)
    dense = np.asarray(adata.X.todense() if sparse else adata.X)
    index = np.array([0, 7, 100, 287])
    for storage, kind in (
        ("float32", DenseExpression),
        ("float16", DenseExpression),
        ("sparse", SparseExpression),
    ):
        dataset = load_dataset(path, DataConfig(storage=storage))
        assert isinstance(dataset.expression, kind)
        rows = dataset.expression.rows(index)
        assert rows.dtype == np.float32 and rows.shape == (4, 60)
        tol = 5e-3 if storage == "float16" else 1e-6
        np.testing.assert_allclose(rows, dense[index], rtol=tol, atol=tol)


def test_auto_storage_rule():
    assert choose_storage("auto", True, 0.05) == "sparse"
    assert choose_storage("auto", True, 0.6) == "float16"
    assert choose_storage("auto", False, 0.05) == "float16"
    assert choose_storage("float32", True, 0.05) == "float32"


def test_chunked_reading_matches_whole_matrix(screen_factory, tmp_path):
    adata = screen_factory(n_hvg=None, sparse=True)
    path = tmp_path / "s.h5ad"
    adata.write_h5ad(path)
    with h5py.File(path) as handle:
        source = ExpressionSource(handle["X"], "X", adata.n_obs)
        blocks = [(start, block) for start, block in source.iter_chunks(chunk_rows=50)]
    assert [start for start, _ in blocks] == [0, 50, 100, 150, 200, 250]
    stacked = sp.vstack([b for _, b in blocks]).toarray()
    np.testing.assert_array_equal(stacked, adata.X.toarray())


def test_raw_counts_are_preprocessed(screen_factory, write_screen):
    import anndata as ad
    import scanpy as sc

    adata = screen_factory(n_hvg=None, raw_counts=True, sparse=True, n_genes=80)
    dataset = load_dataset(write_screen(adata), DataConfig(n_top_genes=30))
    reference = ad.AnnData(adata.X.copy(), var=adata.var[[]].copy())
    sc.pp.normalize_total(reference)
    sc.pp.log1p(reference)
    sc.pp.highly_variable_genes(reference, n_top_genes=30)
    reference = reference[:, reference.var["highly_variable"].to_numpy()]
    assert dataset.genes == tuple(reference.var_names)
    assert 30 <= dataset.n_genes < 80
    np.testing.assert_allclose(
        dataset.expression.rows(np.arange(10)), reference.X[:10].toarray(), rtol=5e-3, atol=5e-3
    )
    assert any("raw counts" in w for w in dataset.warnings)
    assert "raw counts" in dataset.expression_source


def test_small_groups_warn(screen_factory, write_screen, caplog):
    path = write_screen(screen_factory(cells_per_perturbation=8))
    dataset = load_dataset(path, set_len=10)
    assert any("24 of 24" in w and "with replacement" in w for w in dataset.warnings)
    assert "with replacement" in caplog.text
    assert load_dataset(path, set_len=8).warnings == []


def test_csc_source_and_layers(screen_factory, write_screen):
    adata = screen_factory(n_hvg=None)
    dense = adata.X.copy()
    adata.X = sp.csc_matrix(dense)
    adata.layers["logged"] = dense * 2
    path = write_screen(adata)
    from_csc = load_dataset(path, DataConfig(storage="float32"))
    np.testing.assert_allclose(from_csc.expression.rows(np.arange(5)), dense[:5], rtol=1e-6)
    from_layer = load_dataset(path, DataConfig(expression="layers/logged", storage="float32"))
    np.testing.assert_allclose(from_layer.expression.rows(np.arange(5)), 2 * dense[:5], rtol=1e-6)
    assert from_layer.expression_source.startswith("layers['logged']")


def test_unknown_expression_key(write_screen):
    with pytest.raises(DataError, match=r"'X_pca' not found.*'X_hvg'"):
        load_dataset(write_screen(), DataConfig(expression="X_pca"))


def test_fast_float16_rows_match_numpy_cast():
    rng = np.random.default_rng(0)
    values = (rng.random((50, 30)) * 20).astype(np.float16)
    values[values < 4] = 0
    values[0, :4] = np.array([6e-8, 1e-5, 65504, 1.0], dtype=np.float16)  # subnormals, max, one
    index = rng.integers(0, 50, 80)
    fast = DenseExpression(values, checked=True).rows(index)
    assert fast.dtype == np.float32 and fast.flags.c_contiguous
    np.testing.assert_array_equal(fast, values[index].astype(np.float32))
    np.testing.assert_array_equal(DenseExpression(values).rows(index), fast)
