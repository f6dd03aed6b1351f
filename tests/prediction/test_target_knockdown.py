"""The knockdown prior at prediction: a never-measured target that is a measured gene falls by about
the knockdown the training data show, in held-out prediction, queries and screens; nothing else moves.

The screen (``tests/conftest.py::make_knockdown_screen``) knows every knockdown: each target's
expression is multiplied by a remaining fraction in [0.1, 0.3]. A model trained for a few steps has
learned no knockdown of its own, so what lowers a never-measured target is the prior alone.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import ptrag
from ptrag.config import apply_overrides
from ptrag.data.sets import CellSet
from ptrag.prediction.insilico import predict_queries
from ptrag.prediction.knockdown import TargetKnockdown, set_ordinals
from ptrag.prediction.predict import predict_sets
from ptrag.prediction.screen import screen_genes
from ptrag.run.checkpoint import Checkpoint
from ptrag.run.knockdown import KnockdownPrior

SMALL = (
    "model.hidden_dim=16",
    "model.n_layers=1",
    "model.n_heads=2",
    "retrieval.top_k=8",
    "train.max_steps=5",
    "train.sets_per_batch=4",
    "train.cell_set_len=16",
    "train.val_every=1000",
    "train.num_threads=1",
)


@pytest.fixture(scope="module")
def run(knockdown_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> ptrag.Model:
    model = ptrag.Model.from_config("cpu-small", SMALL, arm="memory")
    run_dir = tmp_path_factory.mktemp("kd_run") / "run"
    return model.fit(knockdown_dir / "data.h5ad", knockdown_dir / "split.toml", run_dir, progress=False)


def switched_off(checkpoint: Checkpoint) -> Checkpoint:
    return replace(checkpoint, config=apply_overrides(checkpoint.config, ["prediction.target_knockdown=off"]))


def own_change(adata, control_mean: np.ndarray, genes: list[str], cell_type: str = "a") -> pd.Series:
    """Mean change of each perturbation's own target (log1p), predicted or real, vs ``control_mean``."""
    obs = adata.obs
    changes = {}
    for target in obs["target_gene"].astype(str).unique():
        if target not in genes:
            continue
        rows = ((obs["target_gene"] == target) & (obs["cell_type"] == cell_type)).to_numpy()
        if rows.any():
            j = genes.index(target)
            changes[target] = float(np.asarray(adata.X[rows, j]).mean() - control_mean[j])
    return pd.Series(changes)


@pytest.fixture(scope="module")
def held_out(run: ptrag.Model, knockdown_dir: Path):
    dataset = run.load_data(knockdown_dir / "data.h5ad")
    groups = run.run_split().groups(dataset, "test")
    with_prior = predict_sets(run.checkpoint, dataset, groups, progress=False)
    without = predict_sets(switched_off(run.checkpoint), dataset, groups, progress=False)
    return dataset, with_prior, without


def test_a_never_measured_target_falls_by_about_its_real_knockdown(held_out, knockdown_screen) -> None:
    dataset, with_prior, without = held_out
    genes = list(dataset.genes)
    control = dataset.control_means["a"]
    predicted = own_change(with_prior.adata_pred, control, genes)
    real = own_change(with_prior.adata_real, control, genes)
    assert set(predicted.index) == set(knockdown_screen.test)  # every never-measured in-list target
    assert (predicted < 0).all() and (real < 0).all()
    # The real drops run from 0.6 to 1.9 log1p (gene levels 0.5-20, fractions 0.1-0.3); the prior
    # knows the level from each cell's control value and draws fractions from the 18 training ones.
    ratio = predicted / real[predicted.index]
    assert ratio.between(0.6, 1.5).all(), ratio
    assert 0.85 < ratio.median() < 1.15, ratio
    # Without the prior the model, which has seen no such knockdown, barely moves the target.
    off = own_change(without.adata_pred, control, genes)
    assert (off.abs() < 0.3 * real[off.index].abs()).all(), off


def test_only_the_target_gene_of_a_measured_gene_target_changes(held_out, knockdown_screen) -> None:
    dataset, with_prior, without = held_out
    pred, base = with_prior.adata_pred, without.adata_pred
    assert (pred.obs_names == base.obs_names).all()
    genes = list(dataset.genes)
    targets = pred.obs["target_gene"].astype(str).to_numpy()
    expected = np.zeros(pred.shape, dtype=bool)
    for i, target in enumerate(targets):
        if target in genes:
            expected[i, genes.index(target)] = True
    changed = np.asarray(pred.X) != np.asarray(base.X)
    assert changed[expected].all()
    assert not changed[~expected].any()  # other genes, off-list targets and the control rows
    off_list = np.isin(targets, knockdown_screen.off_list)
    assert off_list.any() and not changed[off_list].any()


def test_the_knockdown_is_each_cells_own_control_value_times_a_training_fraction(held_out, run) -> None:
    dataset, with_prior, _ = held_out
    pred = with_prior.adata_pred
    genes = list(dataset.genes)
    cells = pred.obs["target_gene"].astype(str).isin(genes).to_numpy()
    columns = np.array([genes.index(t) for t in pred.obs["target_gene"].astype(str)[cells]])
    rows = dataset.obs.index.get_indexer(pred.obs["control_barcode"].astype(str)[cells])
    x = dataset.expression.rows(rows)[np.arange(len(rows)), columns].astype(np.float64)
    y = np.asarray(pred.X)[cells][np.arange(len(rows)), columns].astype(np.float64)
    detected = x > 0.5
    fraction = np.expm1(y[detected]) / np.expm1(x[detected])
    prior = run.checkpoint.spec.knockdown
    learned = prior.remaining[np.array(prior.cell_types) == "a"].astype(np.float64)
    nearest = np.abs(fraction[:, None] - learned[None, :]).min(axis=1)
    assert nearest.max() < 1e-3  # every cell's fraction is one of the training targets' fractions
    assert len(np.unique(np.round(fraction, 4))) > 5  # drawn per cell, not one value for all


def test_the_same_seed_gives_the_same_knockdown_whatever_else_is_predicted(
    held_out, run, knockdown_screen
) -> None:
    dataset, with_prior, _ = held_out
    again = predict_sets(run.checkpoint, dataset, run.run_split().groups(dataset, "test"), progress=False)
    assert np.asarray(again.adata_pred.X).tobytes() == np.asarray(with_prior.adata_pred.X).tobytes()
    gene, other = run.checkpoint.spec.knockdown.perturbations[0], knockdown_screen.test[0]
    alone = screen_genes(run.checkpoint, dataset, "a", [gene], n_cells=40, progress=False)
    together = screen_genes(run.checkpoint, dataset, "a", [other, gene], n_cells=40, progress=False)
    assert alone.pseudobulk[gene].X.tobytes() == together.pseudobulk[gene].X.tobytes()
    reseeded = screen_genes(run.checkpoint, dataset, "a", [gene], n_cells=40, seed=1, progress=False)
    assert reseeded.pseudobulk[gene].X.tobytes() != alone.pseudobulk[gene].X.tobytes()


def test_a_screen_and_a_query_lower_the_target_and_leave_off_list_targets_alone(
    run, knockdown_dir, knockdown_screen
) -> None:
    dataset = run.load_data(knockdown_dir / "data.h5ad")
    genes = list(dataset.genes)
    never, off_list = knockdown_screen.test[0], knockdown_screen.off_list[-1]
    real = dataset.expression.rows(dataset.conditions.cells(("a", never)))[:, genes.index(never)].mean()
    real_change = real - dataset.control_means["a"][genes.index(never)]
    result = run.screen(knockdown_dir / "data.h5ad", "a", [never, off_list], n_cells=64, progress=False)
    base = screen_genes(
        switched_off(run.checkpoint), dataset, "a", [never, off_list], n_cells=64, progress=False
    )
    delta = result.pseudobulk[never].layers["delta"].ravel()
    assert delta[genes.index(never)] < 0
    assert 0.6 < delta[genes.index(never)] / real_change < 1.5
    assert result.pseudobulk[off_list].X.tobytes() == base.pseudobulk[off_list].X.tobytes()
    others = np.arange(len(genes)) != genes.index(never)
    np.testing.assert_array_equal(result.pseudobulk[never].X[:, others], base.pseudobulk[never].X[:, others])
    # The target's own drop counts in the effect size and is among the screen's top responding genes.
    assert f"{never}:-" in result.table.set_index("perturbation").loc[never, "top_genes"]

    queries = pd.DataFrame({"cell_type": ["a", "b"], "perturbation": [never, never], "n_cells": [64, 64]})
    adata_pred, _ = run.predict(knockdown_dir / "data.h5ad", queries=queries, progress=False)
    for cell_type in ("a", "b"):
        change = own_change(adata_pred, dataset.control_means[cell_type], genes, cell_type)[never]
        assert change < 0 and 0.5 < change / real_change < 2.0


def test_a_cell_type_with_too_few_targets_logs_its_pooled_prior(
    run, knockdown_dir, knockdown_screen, caplog
) -> None:
    queries = pd.DataFrame({"cell_type": ["b"], "perturbation": [knockdown_screen.test[0]]})
    with caplog.at_level(logging.INFO, logger="ptrag.prediction.knockdown"):
        run.predict(knockdown_dir / "data.h5ad", queries=queries, progress=False)
    assert "knockdown prior for b: pooled over cell types (24 measured targets; b has 6)" in caplog.text


def test_a_saved_run_keeps_its_prior_and_predicts_the_same(run, knockdown_dir, tmp_path) -> None:
    saved = run.save(tmp_path / "copy")
    loaded = ptrag.Model.load(saved)
    prior, again = run.checkpoint.spec.knockdown, loaded.checkpoint.spec.knockdown
    assert again is not None and again.perturbations == prior.perturbations
    np.testing.assert_array_equal(again.remaining, prior.remaining)
    queries = pd.DataFrame({"cell_type": ["a"], "perturbation": [run.run_split().fewshot["a"]["test"][0]]})
    first, _ = run.predict(knockdown_dir / "data.h5ad", queries=queries, progress=False)
    second, _ = loaded.predict(knockdown_dir / "data.h5ad", queries=queries, progress=False)
    assert np.asarray(first.X).tobytes() == np.asarray(second.X).tobytes()


def test_a_run_without_a_prior_warns_and_keeps_the_models_values(run, knockdown_dir, caplog) -> None:
    dataset = run.load_data(knockdown_dir / "data.h5ad")
    old = replace(run.checkpoint, spec=replace(run.checkpoint.spec, knockdown=None))
    queries = pd.DataFrame({"cell_type": ["a"], "perturbation": [run.run_split().fewshot["a"]["test"][0]]})
    with caplog.at_level(logging.WARNING):
        from_old = predict_queries(old, dataset, queries, progress=False)
    assert "holds no knockdown prior" in caplog.text
    base = predict_queries(switched_off(run.checkpoint), dataset, queries, progress=False)
    assert np.asarray(from_old.adata_pred.X).tobytes() == np.asarray(base.adata_pred.X).tobytes()


def test_target_knockdown_replaces_only_the_target_column_in_place() -> None:
    prior = KnockdownPrior(("A", "B"), ("c", "c"), np.array([0.2, 0.2], dtype=np.float32))
    knockdown = TargetKnockdown(prior, ["A", "B", "C"], seed=0)
    idx = np.arange(4)
    sets = [CellSet("c", p, "0", idx, idx, 4) for p in ("C", "NOT_A_GENE", "A", "A")]
    control = torch.rand(4, 4, 3) * 3
    predicted = torch.rand(4, 4, 3)
    before = predicted.clone()
    knockdown.apply(sets, set_ordinals(sets), control, predicted)
    assert set_ordinals(sets) == [0, 0, 0, 1]
    # The off-list target keeps everything; "C" (a measured gene nobody knocked down) and "A" change
    # in their own column only, to log1p(0.2 · expm1(x)) (A's pool is B's row once its own is left out).
    changed = predicted != before
    expected = torch.zeros_like(changed)
    expected[0, :, 2] = expected[2:, :, 0] = True
    assert torch.equal(changed, expected)
    for row, column in ((0, 2), (2, 0), (3, 0)):
        knocked = torch.log1p(0.2 * torch.expm1(control[row, :, column]))
        torch.testing.assert_close(predicted[row, :, column], knocked, rtol=1e-5, atol=1e-6)
