"""Reading new data with a run's gene list and normalisation: no gene selection, no surprises."""

from __future__ import annotations

import logging

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp

from ptrag.config import DataConfig
from ptrag.data.loading import load_dataset
from ptrag.data.normalisation import Normalisation
from ptrag.errors import DataError

N_GENES, N_KEEP = 300, 100


@pytest.fixture
def raw_screen(screen_factory):
    return screen_factory(
        n_hvg=None, raw_counts=True, sparse=True, n_genes=N_GENES, cells_per_perturbation=20
    )


def _controls_only(adata: ad.AnnData) -> ad.AnnData:
    return adata[(adata.obs["gene"] == "non-targeting").to_numpy()].copy()


def _log_normalised(counts: np.ndarray, target_sum: float) -> np.ndarray:
    totals = counts.sum(axis=1, keepdims=True)
    return np.log1p(counts / totals * target_sum)


def test_a_run_gene_list_is_read_from_raw_counts_without_gene_selection(raw_screen, write_screen):
    config = DataConfig(n_top_genes=N_KEEP)
    training = load_dataset(write_screen(raw_screen), config)
    assert training.n_genes == N_KEEP and training.normalisation.kind == "counts"
    train_total = training.normalisation.target_sum
    assert train_total == pytest.approx(float(np.median(raw_screen.X.toarray().sum(axis=1))))

    controls = _controls_only(raw_screen)
    path = write_screen(controls)
    # Selecting genes again on the controls-only file picks others: the failure this option prevents.
    reselected = load_dataset(path, config, prediction_input=True)
    assert len(set(reselected.genes) - set(training.genes)) >= 20

    genes = list(reversed(training.genes))
    dataset = load_dataset(
        path, config, genes=genes, normalisation=training.normalisation, prediction_input=True
    )
    assert dataset.genes == tuple(genes)
    assert dataset.normalisation == training.normalisation
    assert dataset.warnings == []  # controls only, raw counts as in training: nothing to warn about
    counts = controls.X.toarray()
    columns = [list(controls.var_names).index(g) for g in genes]
    expected = _log_normalised(counts, train_total)[:, columns]
    np.testing.assert_allclose(dataset.expression.rows(np.arange(20)), expected[:20], rtol=5e-3, atol=5e-3)


def test_genes_no_hvg_would_pick_are_kept_in_the_given_order(raw_screen, write_screen):
    hvg = set(load_dataset(write_screen(raw_screen), DataConfig(n_top_genes=N_KEEP)).genes)
    not_variable = [g for g in raw_screen.var_names if g not in hvg][:N_KEEP]
    dataset = load_dataset(write_screen(raw_screen), DataConfig(n_top_genes=N_KEEP), genes=not_variable)
    assert dataset.genes == tuple(not_variable) and not hvg & set(dataset.genes)
    # Without a run's normalisation the file's own median total is the target, like in training.
    target = dataset.normalisation.target_sum
    assert target == pytest.approx(float(np.median(raw_screen.X.toarray().sum(axis=1))))
    columns = [list(raw_screen.var_names).index(g) for g in not_variable]
    expected = _log_normalised(raw_screen.X.toarray(), target)[:, columns]
    np.testing.assert_allclose(dataset.expression.rows(np.arange(30)), expected[:30], rtol=5e-3, atol=5e-3)


@pytest.mark.parametrize("raw", [True, False], ids=["raw_counts", "log1p"])
def test_missing_genes_are_listed(screen_factory, write_screen, raw):
    adata = screen_factory(n_hvg=None, raw_counts=raw, n_genes=60)
    genes = ["GENE5", "NOTMEASURED1", "GENE7", "NOTMEASURED2"]
    with pytest.raises(DataError) as info:
        load_dataset(write_screen(adata), genes=genes)
    message = str(info.value)
    assert "lacks 2 of the 4 genes requested: 'NOTMEASURED1', 'NOTMEASURED2'" in message
    assert "58 genes not in that list" in message and "Model.load(RUN).genes" in message


def test_log1p_data_is_subset_and_reordered_exactly(screen_factory, write_screen):
    adata = screen_factory(n_hvg=None, sparse=True)
    genes = ["GENE9", "GENE2", "GENE40"]
    for storage in ("float32", "sparse"):
        dataset = load_dataset(write_screen(adata), DataConfig(storage=storage), genes=genes)
        assert dataset.genes == tuple(genes) and dataset.normalisation == Normalisation("log1p")
        expected = adata[:, genes].X.toarray()
        np.testing.assert_array_equal(dataset.expression.rows(np.arange(adata.n_obs)), expected)


def test_controls_only_input_is_not_warned_about_at_prediction(screen_factory, write_screen, caplog):
    path = write_screen(_controls_only(screen_factory()))
    assert any("only control cells" in w for w in load_dataset(path).warnings)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        dataset = load_dataset(path, prediction_input=True)
    assert dataset.warnings == [] and "only control cells" not in caplog.text
    assert dataset.perturbations() == []


def test_normalisation_mismatches_are_warned(raw_screen, screen_factory, write_screen):
    logged = load_dataset(write_screen(screen_factory(n_hvg=None)), genes=["GENE1", "GENE2"],
                          normalisation=Normalisation("counts", 5000.0))  # fmt: skip
    assert any("trained on raw counts" in w and "5000 counts per cell" in w for w in logged.warnings)
    raw = load_dataset(write_screen(raw_screen), genes=["GENE1"], normalisation=Normalisation())
    assert any("trained on log-normalised data" in w for w in raw.warnings)


def test_normalisation_round_trips_and_rejects_nonsense():
    stored = Normalisation("counts", 1234.5)
    assert Normalisation.from_dict(stored.to_dict()) == stored
    assert Normalisation.from_dict({"kind": "log1p", "target_sum": None}) == Normalisation()
    assert "target_sum=1234.5" in stored.describe()
    with pytest.raises(DataError, match="Unknown normalisation kind 'zscore'"):
        Normalisation.from_dict({"kind": "zscore"})
    with pytest.raises(DataError, match="positive target_sum"):
        Normalisation("counts", None)


def test_repeated_genes_in_the_list_are_refused(screen_factory, write_screen):
    with pytest.raises(DataError, match="repeats 'GENE1'"):
        load_dataset(write_screen(screen_factory(n_hvg=None)), genes=["GENE1", "GENE2", "GENE1"])


def test_sparse_expression_matches_scipy_selection():
    # Guard for the column selection used on CSR chunks: scipy keeps the requested order.
    block = sp.csr_matrix(np.arange(12, dtype=np.float32).reshape(3, 4))
    np.testing.assert_array_equal(block[:, np.array([3, 0])].toarray(), [[3, 0], [7, 4], [11, 8]])
