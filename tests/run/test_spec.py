"""The ModelSpec: stored once and exactly, extended for unseen perturbations and cell types."""

from __future__ import annotations

import logging
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import torch

from conftest import SMALL
from ptrag import Model
from ptrag.run.checkpoint import read_checkpoint
from ptrag.run.spec import ModelSpec
from ptrag.run.tensors import SetTensorizer


@pytest.fixture(scope="module")
def memory_run(tiny: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("memory") / "run"
    Model.from_config("cpu-small", SMALL, arm="memory").fit(
        tiny / "data.h5ad", tiny / "split.toml", run, progress=False
    )
    return run


def test_the_spec_round_trips_exactly_and_loads_without_pickled_objects(memory_run: Path) -> None:
    spec = Model.load(memory_run).checkpoint.spec
    again = ModelSpec.from_state(spec.to_state())
    assert again.genes == spec.genes and again.vocabulary == spec.vocabulary
    np.testing.assert_array_equal(again.database.embeddings, spec.database.embeddings)
    np.testing.assert_array_equal(again.memory.shifts, spec.memory.shifts)
    for name in ("last", "best"):  # what Lightning's resume loads: tensors and plain values only
        torch.load(memory_run / "checkpoints" / f"{name}.ckpt", weights_only=True)
    assert read_checkpoint(memory_run / "checkpoints" / "last.ckpt")["ptrag"]["spec"]["memory"]


def test_an_unseen_cell_type_is_added_with_a_warning_and_retrieves_only_legitimate_evidence(
    memory_run: Path, tiny: Path, tmp_path: Path, caplog
) -> None:
    """Bug: an unseen cell type became cell type 0 (k562) and retrieved k562 neighbours silently."""
    model = Model.load(memory_run)
    memory = model.checkpoint.spec.memory
    measured = pd.Series(memory.cell_types).groupby(pd.Series(memory.perturbations)).nunique()
    gene = str(measured[measured == 2].index[0])  # measured in both training lines
    adata = ad.read_h5ad(tiny / "data.h5ad")
    adata.obs["cell_line"] = adata.obs["cell_line"].cat.rename_categories({"rpe1": "hela"})
    adata.write_h5ad(tmp_path / "hela.h5ad")
    queries = pd.DataFrame({"cell_type": ["hela", "k562"], "perturbation": [gene, gene], "n_cells": [8, 8]})
    with caplog.at_level(logging.WARNING):
        prediction = model.predict(tmp_path / "hela.h5ad", queries=queries)
    assert "Cell type(s) 'hela' were not seen in training" in caplog.text
    record = prediction.retrieval
    hela = set(record.loc[record["cell_type"] == "hela", "candidate"])
    assert hela == {f"{gene}@k562", f"{gene}@rpe1"}  # the query measured in the known lines, nothing else
    k562 = set(record.loc[record["cell_type"] == "k562", "candidate"])
    assert f"{gene}@rpe1" in k562 and f"{gene}@k562" not in k562  # a known line is unchanged
    assert len(prediction.adata_pred) == 16


def test_a_cell_type_outside_the_spec_is_never_mapped_to_another(memory_run: Path, tiny: Path) -> None:
    from ptrag.data.loading import load_dataset
    from ptrag.data.sets import SetSampler

    model = Model.load(memory_run)
    dataset = load_dataset(tiny / "data.h5ad")
    sets = SetSampler(dataset, [("rpe1", dataset.perturbations("rpe1")[0])], 8, 0).fixed_sets()
    spec = model.checkpoint.spec
    shrunk = ModelSpec(
        spec.genes, spec.vocabulary, spec.vocabulary_embeddings, ("k562",), spec.batches, spec.database
    )
    with pytest.raises(ValueError, match="cell types \\['rpe1'\\] are not in the model spec"):
        SetTensorizer(dataset, shrunk, model.checkpoint.config.model.anchor)(sets)


def test_a_run_on_raw_counts_reads_new_data_with_its_own_normalisation(tiny: Path, tmp_path: Path) -> None:
    adata = ad.read_h5ad(tiny / "data.h5ad")
    del adata.obsm["X_hvg"]
    adata.X = adata.layers.pop("counts").astype(np.float32)
    adata.write_h5ad(tmp_path / "counts.h5ad")
    model = Model.from_config("cpu-small", [*SMALL, "train.max_steps=3", "data.n_top_genes=100"], arm="st")
    model.fit(tmp_path / "counts.h5ad", tiny / "split.toml", tmp_path / "run", progress=False)
    trained = model.checkpoint.spec.normalisation
    assert trained.kind == "counts" and trained.target_sum > 0 and len(model.genes) == 100
    assert Model.load(tmp_path / "run").checkpoint.spec.normalisation == trained  # stored in the checkpoint
    # A file of only some cells would get another median total; the run's own target_sum is used.
    subset = adata[adata.obs["cell_line"] == "k562"].copy()
    subset.write_h5ad(tmp_path / "k562.h5ad")
    new = model.load_data(tmp_path / "k562.h5ad")
    assert new.normalisation == trained and new.genes == model.genes


def test_a_run_is_copied_and_updated_through_one_routine_that_keeps_everything_else(
    memory_run: Path, tmp_path: Path
) -> None:
    from ptrag.run.checkpoint import copy_run, update_checkpoint

    source = read_checkpoint(memory_run / "checkpoints" / "last.ckpt")
    spec = ModelSpec.from_state(source["ptrag"]["spec"])
    grown = spec.with_cell_types(["new_line"])
    before = {p.relative_to(memory_run): p.read_bytes() for p in memory_run.rglob("*") if p.is_file()}
    copy = copy_run(memory_run, tmp_path / "copy", spec=grown)
    after = {p.relative_to(memory_run): p.read_bytes() for p in memory_run.rglob("*") if p.is_file()}
    assert before == after  # the source run is never modified
    assert {p.relative_to(copy) for p in copy.rglob("*") if p.is_file()} == set(before)
    copied = read_checkpoint(copy / "checkpoints" / "last.ckpt")
    assert copied["ptrag"]["spec"]["cell_types"][-1] == "new_line"
    # Everything but the spec is as it was: Lightning's loop and optimizer state, the weights.
    assert copied["global_step"] == source["global_step"] and copied.keys() == source.keys()
    assert copied["optimizer_states"][0]["param_groups"] == source["optimizer_states"][0]["param_groups"]
    for key, value in source["state_dict"].items():
        assert torch.equal(copied["state_dict"][key], value)
    update_checkpoint(copy / "checkpoints" / "best.ckpt", scales=(0.5, 0.25), record={"note": "x"})
    best = read_checkpoint(copy / "checkpoints" / "best.ckpt")
    assert (best["residual_scale"], best["cell_scale"], best["note"]) == (0.5, 0.25, "x")
    assert Model.load(copy).checkpoint.residual_scale == 0.5
