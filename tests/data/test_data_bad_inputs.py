"""Every bad input gives one DataError that names the problem (issue 2 §3, issue 8 §1)."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import scipy.sparse as sp

from ptrag.config import DataConfig
from ptrag.data.loading import load_dataset
from ptrag.errors import DataError


def _error(path, config: DataConfig | None = None) -> str:
    with pytest.raises(DataError) as info:
        load_dataset(path, config or DataConfig())
    return str(info.value)


def test_missing_perturbation_column_lists_columns(screen_factory, write_screen):
    adata = screen_factory()
    adata.obs = adata.obs.rename(columns={"gene": "sgRNA"})
    message = _error(write_screen(adata))
    assert "No perturbation column" in message
    assert "'sgRNA'" in message and "'cell_line'" in message and "--perturbation-column" in message


def test_missing_cell_type_column(screen_factory, write_screen):
    adata = screen_factory()
    del adata.obs["cell_line"]
    message = _error(write_screen(adata))
    assert "No cell type column" in message and "'gene'" in message


def test_override_column_not_present(screen_factory, write_screen):
    message = _error(write_screen(), DataConfig(cell_type_column="tissue"))
    assert "'tissue'" in message and "'cell_line'" in message


def test_unknown_control_label_lists_labels_by_frequency(screen_factory, write_screen):
    adata = screen_factory(control_label="scramble")
    message = _error(write_screen(adata))
    assert "No control cells" in message
    assert message.index("'scramble (96 cells)'") < message.index("'G1 (24 cells)'")
    message = _error(write_screen(adata), DataConfig(control_label="NT"))
    assert "'NT'" in message and "scramble" in message


def test_cell_type_without_controls(screen_factory, write_screen):
    adata = screen_factory()
    adata = adata[~((adata.obs["cell_line"] == "rpe1") & (adata.obs["gene"] == "non-targeting"))].copy()
    message = _error(write_screen(adata))
    assert "'rpe1'" in message and "no control cells" in message


@pytest.mark.parametrize("bad", [np.nan, np.inf])
@pytest.mark.parametrize("where", ["X_hvg", "X_sparse"])
def test_nan_or_inf(screen_factory, write_screen, bad, where):
    adata = screen_factory(n_hvg=40 if where == "X_hvg" else None)
    if where == "X_hvg":
        adata.obsm["X_hvg"][17, 3] = bad
    else:
        dense = adata.X.copy()
        dense[17, 3] = bad
        adata.X = sp.csr_matrix(dense)
    message = _error(write_screen(adata))
    assert "NaN or infinite" in message and "row 17" in message


def test_negative_values(screen_factory, write_screen):
    adata = screen_factory()
    adata.obsm["X_hvg"][40, 0] = -0.5
    message = _error(write_screen(adata))
    assert "negative values" in message and "row 40" in message and "log1p" in message


def test_scaled_data_is_rejected(screen_factory, write_screen):
    adata = screen_factory(n_hvg=None)
    adata.X = (adata.X - adata.X.mean(0)) / (adata.X.std(0) + 1e-6)
    assert "negative values" in _error(write_screen(adata))


def test_duplicated_gene_names(screen_factory, write_screen):
    adata = screen_factory(n_hvg=None)
    names = list(adata.var_names)
    names[5] = names[2]
    adata.var_names = names
    message = _error(write_screen(adata))
    assert "Duplicated gene names" in message and "'GENE2'" in message


def test_duplicated_cell_names(screen_factory, write_screen):
    adata = screen_factory()
    names = list(adata.obs_names)
    names[9] = names[1]
    adata.obs_names = names
    message = _error(write_screen(adata))
    assert "Duplicated cell names" in message and "'cell1'" in message


def test_missing_labels(screen_factory, write_screen):
    adata = screen_factory()
    adata.obs["gene"] = adata.obs["gene"].astype(object)
    adata.obs.iloc[3, 0] = None
    message = _error(write_screen(adata))
    assert "'gene'" in message and "1 missing values" in message


def test_empty_file_no_cells(screen_factory, write_screen):
    adata = screen_factory()[:0].copy()
    assert "0 cells" in _error(write_screen(adata))


def test_empty_file_no_genes(screen_factory, write_screen):
    adata = screen_factory(n_hvg=None)[:, :0].copy()
    assert "0 genes" in _error(write_screen(adata))


def test_not_hdf5(tmp_path):
    path = tmp_path / "table.h5ad"
    path.write_text("cell,gene\nA,B\n")
    assert "not an HDF5 file" in _error(path)


def test_hdf5_but_not_anndata(tmp_path):
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as handle:
        handle["matrix"] = np.zeros((3, 3))
    message = _error(path)
    assert "not AnnData" in message and "obs" in message


def test_missing_file(tmp_path):
    assert "does not exist" in _error(tmp_path / "nope.h5ad")


def test_truncated_file(screen_h5ad, tmp_path):
    data = screen_h5ad.read_bytes()
    truncated = tmp_path / "truncated.h5ad"
    truncated.write_bytes(data[: len(data) // 2])
    _error(truncated)  # any DataError, never an h5py traceback


def test_unnamed_obsm_columns(screen_factory, write_screen):
    adata = screen_factory()
    adata.var["highly_variable"] = False
    message = _error(write_screen(adata))
    assert "Cannot name the 40 columns" in message and "uns['X_hvg_genes']" in message


def test_raw_counts_mixed_with_fractions(screen_factory, write_screen):
    adata = screen_factory(n_hvg=None, raw_counts=True, n_controls=3000)
    adata.X[1500, :] += 0.5  # outside the sampled windows
    assert "non-integer" in _error(write_screen(adata))


@pytest.mark.parametrize("expression", ["X", "X_hvg"])
def test_raw_counts_with_one_fraction_in_the_sample_are_refused_not_read_as_log1p(
    screen_factory, write_screen, expression
):
    # It used to be read as log1p data with a warning: one fraction made the sample "not counts".
    adata = screen_factory(n_hvg=40, raw_counts=True)
    target = adata.obsm["X_hvg"] if expression == "X_hvg" else adata.X
    row, col = 5, int(np.flatnonzero(target[5])[0])  # row 5 is in the first sampled window
    target[row, col] += 0.5
    path = write_screen(adata)
    message = _error(path, DataConfig(expression="X" if expression == "X" else "auto"))
    key = "X" if expression == "X" else "obsm['X_hvg']"
    assert message.startswith(f"{key} of ") and path.name in message
    assert "looks like raw counts" in message and "cell row 5" in message
    assert f"non-integer value ({target[row, col]:g})" in message


def test_unused_and_control_only_cell_types(screen_factory, write_screen):
    adata = screen_factory()
    obs = adata.obs
    adata.obs["cell_line"] = obs["cell_line"].cat.add_categories(["hela"])  # a category with no cells
    adata = adata[~((obs["cell_line"] == "rpe1") & (obs["gene"] != "non-targeting")).to_numpy()].copy()
    dataset = load_dataset(write_screen(adata))
    assert dataset.cell_types == ["hepg2", "jurkat", "k562", "rpe1"]  # 'hela' has no cells: dropped
    assert any("'rpe1' have only control cells" in w for w in dataset.warnings)
