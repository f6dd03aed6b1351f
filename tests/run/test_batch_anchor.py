"""model.anchor = "batch_pool": each set is re-centred on the control means of its cells' batches,
in training batches and at prediction, where a group of several sets shares one anchor."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import ptrag
from ptrag.config import apply_overrides, load_config
from ptrag.data.dataset import MIN_BATCH_CONTROLS
from ptrag.data.loading import load_dataset
from ptrag.data.sets import SetSampler
from ptrag.data.splits import Split
from ptrag.prediction.predict import predict_sets
from ptrag.run.tensors import SetTensorizer

SMALL = (
    "model.hidden_dim=16",
    "model.n_layers=1",
    "model.n_heads=2",
    "train.max_steps=5",
    "train.sets_per_batch=4",
    "train.cell_set_len=8",
    "train.val_every=1000",
    "train.num_threads=1",
    "embedding.missing=zero",
    "prediction.target_knockdown=off",
)


def _screen(make_screen: Callable[..., Any]) -> Any:
    """Two lines, two batches each; line k562's controls: 60 in batch 0 (shifted up by 1) and 20 in
    batch 1 (too few for a batch mean of their own)."""
    adata = make_screen(cell_lines=("k562", "rpe1"), n_controls=80, cells_per_perturbation=21, n_batches=2)
    obs = adata.obs
    controls = np.flatnonzero(((obs["gene"] == "non-targeting") & (obs["cell_line"] == "k562")).to_numpy())
    batch = obs["gem_group"].astype(str).to_numpy().copy()
    batch[controls[:60]], batch[controls[60:]] = "k562_0", "k562_1"
    obs["gem_group"] = batch
    adata.obsm["X_hvg"][controls[:60]] += 1.0
    return adata


@pytest.fixture
def screen(screen_factory: Callable[..., Any], tmp_path: Path) -> Path:
    directory = tmp_path
    _screen(screen_factory).write_h5ad(directory / "data.h5ad")
    roles = {"k562": {"val": ["G1"], "test": ["G2", "G3"]}}
    Split(name="s", fewshot=roles, datasets={"s": "data.h5ad"}, training={"s": "train"}).write(
        directory / "split.toml"
    )
    return directory


def test_each_batch_row_is_its_controls_mean_or_the_pool_mean_when_too_few(screen: Path) -> None:
    dataset = load_dataset(screen / "data.h5ad")
    x = dataset.expression.rows(np.arange(dataset.n_cells))
    controls = dataset.conditions.controls("k562")
    codes = dataset.batch_codes[controls]
    table = dataset.batch_control_means["k562"]
    big = int(np.bincount(codes).argmax())
    assert (codes == big).sum() >= MIN_BATCH_CONTROLS > (codes != big).sum()
    np.testing.assert_allclose(table[big], x[controls[codes == big]].mean(axis=0), atol=1e-5)
    pool = x[controls].mean(axis=0)
    np.testing.assert_allclose(dataset.control_means["k562"], pool, atol=1e-5)
    # Every other batch (the small one, and rpe1's batches, where k562 has no controls): the pool.
    others = [b for b in range(table.shape[0]) if b != big]
    np.testing.assert_allclose(table[others], np.tile(pool, (len(others), 1)), atol=1e-5)
    assert np.abs(table[big] - pool).mean() > 0.2  # +1 on 60 of 80 controls: 0.25 above the pool


def test_a_sets_anchor_weighs_each_batch_row_by_its_cells(screen: Path) -> None:
    dataset = load_dataset(screen / "data.h5ad")
    controls = dataset.conditions.controls("k562")
    codes = dataset.batch_codes[controls]
    big = int(np.bincount(codes).argmax())
    rows = np.concatenate([controls[codes == big][:3], controls[codes != big][:1]])
    assert load_config("cpu-small").model.anchor == "batch_pool"  # the default
    tensorize = SetTensorizer(dataset, _spec(dataset), "batch_pool")
    table = dataset.batch_control_means["k562"]
    expected = 0.75 * table[big] + 0.25 * dataset.control_means["k562"]
    np.testing.assert_allclose(tensorize.anchor_means("k562", rows), expected, atol=1e-5)
    pooled = SetTensorizer(dataset, _spec(dataset), "control_pool")
    np.testing.assert_array_equal(pooled.anchor_means("k562", rows), dataset.control_means["k562"])
    sets = SetSampler(dataset, [("k562", "G4")], 8, 0).fixed_sets()
    batch = tensorize(sets)
    for i, cell_set in enumerate(sets):
        np.testing.assert_allclose(
            batch["control_mean"][i].numpy(), tensorize.anchor_means("k562", cell_set.control_idx), atol=1e-6
        )


def _spec(dataset: Any) -> Any:
    from ptrag.run.spec import ModelSpec

    batches = tuple(str(b) for b in dataset.obs["batch"].cat.categories)
    return ModelSpec(dataset.genes, ("G4",), np.zeros((1, 4), np.float32), ("k562", "rpe1"), batches, None)


def test_a_predicted_group_moves_by_its_batch_anchors_offset_from_the_pool(screen: Path) -> None:
    model = ptrag.Model.from_config("cpu-small", SMALL, arm="st")
    with pytest.warns(UserWarning, match="covered by no gene prior"):
        run = model.fit(screen / "data.h5ad", screen / "split.toml", screen / "run", progress=False)
    checkpoint = run.checkpoint
    assert checkpoint.config.model.anchor == "batch_pool"
    pooled = replace(checkpoint, config=apply_overrides(checkpoint.config, ["model.anchor=control_pool"]))
    dataset = run.load_data(screen / "data.h5ad")
    groups = [("k562", "G2"), ("k562", "G3")]
    batch = predict_sets(checkpoint, dataset, groups, progress=False).adata_pred
    pool = predict_sets(pooled, dataset, groups, progress=False).adata_pred
    assert (batch.obs["control_barcode"] == pool.obs["control_barcode"]).all()  # the same draws
    table = dataset.batch_control_means["k562"]
    row_of = {name: i for i, name in enumerate(dataset.obs.index)}
    for _, perturbation in groups:
        rows = (batch.obs["target_gene"] == perturbation).to_numpy()
        cells = np.array([row_of[c] for c in batch.obs["control_barcode"][rows]])
        anchor = table[dataset.batch_codes[cells]].mean(axis=0)
        offset = anchor - dataset.control_means["k562"]
        assert np.abs(offset).mean() > 0.05  # half the cells from the shifted batch: a real offset
        # The response does not depend on the anchor, so the group moves by the anchor's offset.
        np.testing.assert_allclose(
            batch.X[rows].mean(axis=0) - pool.X[rows].mean(axis=0), offset, atol=1e-4
        )
    # A query's effect size is measured from the anchor its cells were centred on, not the pool.
    from ptrag.prediction.insilico import predict_queries

    queries = pd.DataFrame({"cell_type": ["k562"], "perturbation": ["G2"], "n_cells": [30]})
    queried = predict_queries(checkpoint, dataset, queries, seed=1, progress=False).adata_pred
    effect = pd.DataFrame(queried.uns["ptrag"]["query_effects"])["effect_size"].iloc[0]
    cells = np.array([row_of[c] for c in queried.obs["control_barcode"]])
    mean = np.asarray(queried.X).mean(axis=0)
    anchor = table[dataset.batch_codes[cells]].mean(axis=0)
    assert effect == pytest.approx(np.linalg.norm(mean - anchor), rel=1e-5)
    assert abs(effect - np.linalg.norm(mean - dataset.control_means["k562"])) > 1e-3
    # A screen's deltas are measured from its shared draw's anchor, stored as uns control_mean.
    from ptrag.prediction.screen import screen_genes

    screened = screen_genes(
        checkpoint, dataset, "k562", ["G2", "G3"], n_cells=30, keep_cells=True, progress=False,
        intervals=False,
    )
    draw = np.array([row_of[c] for c in screened.cells.obs["control_barcode"][:30]])
    anchor = table[dataset.batch_codes[draw]].mean(axis=0)
    bulk = screened.pseudobulk
    np.testing.assert_allclose(bulk.uns["ptrag"]["control_mean"], anchor, atol=1e-5)
    np.testing.assert_allclose(bulk.layers["delta"], np.asarray(bulk.X) - anchor[None, :], atol=1e-5)
