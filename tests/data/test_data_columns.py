"""Several candidate obs columns: agreeing ones are resolved (Replogle/Arc name first), others fail."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from ptrag.config import DataConfig
from ptrag.data.columns import first_disagreement
from ptrag.data.loading import load_dataset
from ptrag.errors import DataError


def test_first_disagreement_compares_partitions_not_labels():
    assert first_disagreement(pd.Series(["a", "a", "b"]), pd.Series(["x", "x", "y"])) is None
    # Column b splits cells 0 and 1, which a puts together.
    assert first_disagreement(pd.Series(["a", "a", "b"]), pd.Series(["x", "y", "y"])) == (0, 1)
    # Column b merges cells 1 and 2, which a keeps apart.
    assert first_disagreement(pd.Series(["a", "b", "c"]), pd.Series(["x", "y", "y"])) == (1, 2)
    assert first_disagreement(pd.Series([1, 1, 2]), pd.Series(["1", "1", "2"])) is None


@pytest.mark.parametrize(
    ("extra", "make", "role", "expected"),
    [
        ("target_gene", lambda obs: obs["gene"].astype(str), "perturbation", "gene"),
        ("cell_type", lambda obs: obs["cell_line"].astype(str).str.upper(), "cell_type", "cell_line"),
        ("batch", lambda obs: "b" + obs["gem_group"].astype(str), "batch", "gem_group"),
    ],
    ids=["gene+target_gene", "cell_line+cell_type", "gem_group+batch"],
)
def test_agreeing_columns_pick_the_replogle_name(
    screen_factory, write_screen, caplog, extra, make, role, expected
):
    adata = screen_factory()
    adata.obs[extra] = pd.Categorical(make(adata.obs))
    with caplog.at_level(logging.INFO, logger="ptrag.data.columns"):
        dataset = load_dataset(write_screen(adata))
    assert getattr(dataset.columns, role) == expected
    lines = [r.getMessage() for r in caplog.records if "agree cell by cell" in r.getMessage()]
    assert len(lines) == 1
    assert f"'{expected}'" in lines[0] and f"'{extra}'" in lines[0] and "Replogle/Arc name" in lines[0]
    reference = load_dataset(write_screen(screen_factory()))
    assert dataset.cell_types == reference.cell_types
    np.testing.assert_array_equal(dataset.is_control, reference.is_control)


def test_agreeing_aliases_without_the_replogle_name_take_the_first_known(screen_factory, write_screen):
    adata = screen_factory(control_label="ctrl")
    genes = adata.obs.pop("gene").astype(str)
    adata.obs["condition"] = pd.Categorical(np.where(genes == "ctrl", "ctrl", genes + "+ctrl"))
    adata.obs["target_gene"] = pd.Categorical(genes)
    dataset = load_dataset(write_screen(adata))
    assert dataset.columns.perturbation == "target_gene"
    assert dataset.perturbations("k562")[0] == "G0"


def test_disagreeing_columns_fail_naming_both_and_a_cell(screen_factory, write_screen):
    adata = screen_factory()
    target = adata.obs["gene"].astype(str).to_numpy().copy()
    assert target[3] == target[4] == "G1"
    target[4] = "G2"  # cell4 was knocked down for G1 per `gene` but G2 per `target_gene`
    adata.obs["target_gene"] = pd.Categorical(target)
    path = write_screen(adata)
    with pytest.raises(DataError) as info:
        load_dataset(path)
    message = str(info.value)
    assert "two perturbation columns that disagree, 'gene' and 'target_gene'" in message
    assert "cell 'cell4' has gene='G1', target_gene='G2'" in message
    assert "--perturbation-column" in message
    assert load_dataset(path, DataConfig(perturbation_column="target_gene")).columns.perturbation == (
        "target_gene"
    )


def test_disagreeing_cell_type_columns(screen_factory, write_screen):
    adata = screen_factory()
    adata.obs["cell_type"] = pd.Categorical(["lymphoblast"] * adata.n_obs)
    with pytest.raises(DataError, match=r"'cell_line' and 'cell_type'.*--cell-type-column"):
        load_dataset(write_screen(adata))
