"""One definition of a run's (cell type, perturbation) groups, shared by training and prediction."""

from __future__ import annotations

import logging
from pathlib import Path

import anndata as ad
import pandas as pd
import pytest

from conftest import SMALL
from ptrag import Model
from ptrag.data.loading import load_dataset
from ptrag.data.splits import Split
from ptrag.run.groups import groups_by_role, with_validation_groups


def test_a_run_trained_with_missing_drop_predicts_its_own_test_split(
    tiny: Path, tmp_path: Path, caplog
) -> None:
    """Bug: training left the group without an embedding out, prediction did not, and failed."""
    adata = ad.read_h5ad(tiny / "data.h5ad")
    adata.obs["gene"] = adata.obs["gene"].cat.rename_categories({"CDC23": "NOTAGENE123"})
    adata.write_h5ad(tmp_path / "data.h5ad")
    split_text = (tiny / "split.toml").read_text()
    assert '"CDC23"' in split_text  # a k562 test perturbation
    (tmp_path / "split.toml").write_text(split_text.replace('"CDC23"', '"NOTAGENE123"'))

    model = Model.from_config("cpu-small", [*SMALL, "embedding.missing=drop"], arm="st")
    with pytest.warns(UserWarning, match="NOTAGENE123"):
        model.fit(tmp_path / "data.h5ad", tmp_path / "split.toml", tmp_path / "run", progress=False)
    assert "NOTAGENE123" not in model.perturbations
    with caplog.at_level(logging.WARNING), pytest.warns(UserWarning, match="NOTAGENE123"):
        adata_pred, adata_real = model.predict(tmp_path / "data.h5ad", split="test", progress=False)
    assert "Skipping 1 test group(s) whose perturbation has no embedding" in caplog.text
    dataset = load_dataset(tmp_path / "data.h5ad")
    test_groups = Split.read(tmp_path / "split.toml").groups(dataset, "test")
    expected = {g for g in test_groups if g[1] != "NOTAGENE123"}
    control = dataset.control_label
    obs = adata_pred.obs
    predicted = {(c, p) for c, p in zip(obs["cell_type"], obs["target_gene"], strict=True) if p != control}
    assert predicted == expected
    assert set(adata_real.obs["target_gene"]) == {p for _, p in expected} | {control}

    # Queries and screens follow the same rule, with the same message.
    caplog.clear()
    queries = pd.DataFrame(
        {"cell_type": ["k562", "k562"], "perturbation": ["NOTAGENE123", "PSMA4"], "n_cells": 8}
    )
    with caplog.at_level(logging.WARNING), pytest.warns(UserWarning, match="NOTAGENE123"):
        queried, _ = model.predict(tmp_path / "data.h5ad", queries=queries, progress=False)
    skipped = "whose perturbation has no embedding (embedding.missing = drop)"
    assert f"Skipping 1 query(ies) {skipped}" in caplog.text
    assert set(queried.obs["target_gene"]) == {"PSMA4"}
    assert list(queried.uns["ptrag"]["query_effects"]["perturbation"]) == ["PSMA4"]
    caplog.clear()
    with caplog.at_level(logging.WARNING), pytest.warns(UserWarning, match="NOTAGENE123"):
        screen = model.screen(
            tmp_path / "data.h5ad", "k562", genes=["NOTAGENE123", "PSMA4"], progress=False
        )
    assert f"Skipping 1 gene(s) {skipped}" in caplog.text
    assert list(screen.table["perturbation"]) == ["PSMA4"]


def test_training_and_prediction_see_the_same_groups(tiny: Path) -> None:
    dataset = load_dataset(tiny / "data.h5ad")
    split = Split.read(tiny / "split.toml")
    everything = set(dataset.perturbations())
    by_role = groups_by_role(dataset, split, everything)
    for role in ("train", "val", "test"):
        assert by_role[role] == split.groups(dataset, role)
    without = groups_by_role(dataset, split, everything - {"PSMA4"})
    assert all(p != "PSMA4" for groups in without.values() for _, p in groups)
    assert sum(map(len, by_role.values())) - sum(map(len, without.values())) == sum(
        1 for c in dataset.cell_types if "PSMA4" in dataset.perturbations(c)
    )


def test_a_split_without_val_groups_gets_a_seeded_held_out_fraction(tiny: Path) -> None:
    dataset = load_dataset(tiny / "data.h5ad")
    split = Split.read(tiny / "split.toml")
    no_val = Split(
        name=split.name,
        fewshot={c: {"test": lists["test"], "val": []} for c, lists in split.fewshot.items()},
        datasets=split.datasets,
        training=split.training,
    )
    train = no_val.groups(dataset, "train")
    widened, held = with_validation_groups(no_val, dataset, 0.1)
    assert len(held) == round(0.1 * len(train)) and set(held) <= set(train)
    assert widened.groups(dataset, "val") == held
    assert set(widened.groups(dataset, "train")) == set(train) - set(held)
    assert widened.groups(dataset, "test") == no_val.groups(dataset, "test")
    assert with_validation_groups(no_val, dataset, 0.1) == (widened, held)  # seeded
    assert with_validation_groups(split, dataset, 0.1) == (split, [])  # has val groups already
    assert with_validation_groups(no_val, dataset, 0.0) == (no_val, [])
