"""State gains at prediction: a trained run spreads each group's predicted response over its cells
by basal state, through the path every workflow shares, without moving the group's mean."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

import ptrag
from ptrag.config import apply_overrides
from ptrag.data.splits import Split
from ptrag.prediction.predict import predict_sets
from ptrag.run.checkpoint import Checkpoint

SMALL = (
    "model.hidden_dim=16",
    "model.n_layers=1",
    "model.n_heads=2",
    "retrieval.top_k=4",
    "train.max_steps=5",
    "train.sets_per_batch=4",
    "train.cell_set_len=16",
    "train.val_every=1000",
    "train.num_threads=1",
    "embedding.missing=zero",
)


@pytest.fixture(scope="module")
def run(state_screen, tmp_path_factory: pytest.TempPathFactory) -> ptrag.Model:
    directory = tmp_path_factory.mktemp("state")
    state_screen.adata.write_h5ad(directory / "data.h5ad")
    roles = {"a": {"val": ["P12"], "test": [state_screen.held_out, "P11"]}}
    Split(name="s", fewshot=roles, datasets={"s": "data.h5ad"}, training={"s": "train"}).write(
        directory / "split.toml"
    )
    model = ptrag.Model.from_config("cpu-small", SMALL, arm="st")
    with pytest.warns(UserWarning, match="covered by no gene prior"):
        return model.fit(directory / "data.h5ad", directory / "split.toml", directory / "run", progress=False)


def switched_off(checkpoint: Checkpoint) -> Checkpoint:
    return replace(checkpoint, config=apply_overrides(checkpoint.config, ["prediction.state_gain=off"]))


def test_held_out_groups_keep_their_mean_and_follow_the_learned_states(run, state_screen) -> None:
    dataset = run.load_data(state_screen.adata)
    groups = [("a", "P11")]
    on = predict_sets(run.checkpoint, dataset, groups, progress=False).adata_pred
    off = predict_sets(switched_off(run.checkpoint), dataset, groups, progress=False).adata_pred
    rows = (on.obs["target_gene"] == "P11").to_numpy()
    assert (off.obs["control_barcode"] == on.obs["control_barcode"]).all()  # the same control draws
    np.testing.assert_allclose(on.X[rows].mean(axis=0), off.X[rows].mean(axis=0), atol=1e-4)
    moved = on.X[rows] - off.X[rows]
    assert np.abs(moved).max() > 1e-3  # the cells themselves moved (5 training steps: a small response)
    # The cells that moved up on a gene that responds 1.6x in the high state are the high-state
    # cells (visible on the state genes of the control cell each was predicted from), wherever the
    # group's response on that gene points.
    gains = run.checkpoint.spec.state_gains.get("a")
    controls = dataset.expression.rows(
        dataset.obs.index.get_indexer(on.obs["control_barcode"][rows].astype(str))
    )
    state = state_screen.state_genes
    high = controls[:, state].mean(axis=1) > gains.control_mean[state].mean()
    response = off.X[rows].mean(axis=0) - dataset.control_means["a"]
    genes = np.arange(state_screen.n_genes)[state_screen.scaled_genes]
    toward = moved[:, genes] * np.sign(response[genes])
    assert toward[high].mean() > 0 > toward[~high].mean()


def test_a_run_without_gains_predicts_as_before(run, state_screen, caplog) -> None:
    dataset = run.load_data(state_screen.adata)
    old = replace(run.checkpoint, spec=replace(run.checkpoint.spec, state_gains=None))
    groups = [("a", "P11")]
    with caplog.at_level("INFO"):
        before = predict_sets(old, dataset, groups, progress=False).adata_pred
    off = predict_sets(switched_off(run.checkpoint), dataset, groups, progress=False).adata_pred
    np.testing.assert_array_equal(before.X, off.X)
    assert "holds no state gains" in caplog.text
