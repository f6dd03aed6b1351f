"""In-silico queries through the Python API: checked in the library, with the CLI's one-line errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import ptrag
from ptrag.errors import DataError, PtragError
from ptrag.prediction.insilico import check_queries

TINY_OVERRIDES = (
    "model.hidden_dim=16",
    "model.n_layers=1",
    "train.max_steps=3",
    "train.num_threads=1",
    "train.cell_set_len=16",
    "train.val_every=1000",
)
ONE = {"cell_type": ["k562"], "perturbation": ["RPL10"]}


@pytest.fixture(scope="module")
def model(tiny_screen: Path, tmp_path_factory: pytest.TempPathFactory) -> ptrag.Model:
    run_dir = tmp_path_factory.mktemp("queries") / "run"
    fitted = ptrag.Model.from_config("cpu-small", TINY_OVERRIDES, arm="st")
    return fitted.fit(tiny_screen / "data.h5ad", tiny_screen / "split.toml", run_dir, progress=False)


@pytest.mark.parametrize(
    ("queries", "expected"),
    [
        (pd.DataFrame({"cell_type": ["k562"]}), "needs columns cell_type and perturbation"),
        (pd.DataFrame(columns=["cell_type", "perturbation"]), "has no rows"),
        (pd.DataFrame({**ONE, "n_cells": [0]}), "bad value(s) '0'"),
        (pd.DataFrame({**ONE, "n_cells": [np.nan]}), "'nan' on row(s) 0"),
        (pd.DataFrame({"cell_type": ["k562", "k562"], "perturbation": ["RPL10", "RPL10"]}), "more than once"),
        (pd.DataFrame({**ONE, "n_cells": [1e9]}), "GB of memory"),
        ([("k562", "RPL10")], "queries must be a pandas DataFrame"),
    ],
    ids=["missing_column", "empty", "zero_cells", "nan_cells", "duplicates", "billion_cells", "not_a_frame"],
)
def test_bad_query_frames_are_ptrag_errors(model, tiny_screen, queries, expected) -> None:
    # They used to be KeyError, ValueError or AttributeError from deep inside.
    with pytest.raises(PtragError) as info:
        model.predict(tiny_screen / "data.h5ad", queries=queries, progress=False)
    assert isinstance(info.value, DataError)
    assert expected in str(info.value) and "\n" not in str(info.value)


def test_a_good_query_frame_is_predicted_and_left_unchanged(model, tiny_screen) -> None:
    queries = pd.DataFrame(
        {"cell_type": ["k562", "rpe1"], "perturbation": ["RPL10", "MYC"], "n_cells": [7, 9.0]}
    )
    original = queries.copy()
    adata_pred, _ = model.predict(tiny_screen / "data.h5ad", queries=queries, progress=False)
    assert adata_pred.obs["target_gene"].value_counts().to_dict() == {"MYC": 9, "RPL10": 7}
    pd.testing.assert_frame_equal(queries, original)


def test_every_query_carries_its_effect_size_and_interval(model, tiny_screen) -> None:
    from ptrag.prediction.effect_interval import EffectInterval

    queries = pd.DataFrame(
        {"cell_type": ["k562", "rpe1"], "perturbation": ["RPL10", "MYC"], "n_cells": [7, 9]}
    )
    adata_pred, _ = model.predict(tiny_screen / "data.h5ad", queries=queries, progress=False)
    effects = pd.DataFrame(adata_pred.uns["ptrag"]["query_effects"])
    assert list(effects["perturbation"]) == ["RPL10", "MYC"]
    dataset = model.load_data(tiny_screen / "data.h5ad")
    # Each effect is measured from what the query's control cells were re-centred on: the mean of
    # their batches' control means (the run's batch anchor), not the whole pool's.
    assert model.checkpoint.config.model.anchor == "batch_pool"
    position = {name: i for i, name in enumerate(dataset.obs.index)}
    for row in effects.itertuples():
        cells = (adata_pred.obs["target_gene"] == row.perturbation).to_numpy()
        controls = [position[c] for c in adata_pred.obs["control_barcode"][cells]]
        anchor = dataset.batch_control_means[row.cell_type][dataset.batch_codes[controls]].mean(axis=0)
        expected = np.linalg.norm(np.asarray(adata_pred.X[cells]).mean(axis=0) - anchor)
        assert row.effect_size == pytest.approx(expected, rel=1e-3)
    # tiny's 10 validation groups bound no 90 % interval: the bounds say so instead of guessing.
    interval = EffectInterval.from_state(adata_pred.uns["ptrag"]["effect_interval"])
    assert interval is not None and interval.n_groups == 10
    assert (effects["effect_low"] == 0).all() and np.isinf(effects["effect_high"]).all()


def test_check_queries_names_file_lines_and_frame_rows() -> None:
    frame = pd.DataFrame({"cell_type": ["a", "b", "a"], "perturbation": ["X", "Y", "X"]}, index=[10, 11, 12])
    with pytest.raises(DataError, match=r"'a/X' on row\(s\) 10, 12"):
        check_queries(frame)
    with pytest.raises(DataError, match=r"^Query file q.csv .*'a/X' on line\(s\) 2, 4"):
        check_queries(frame.reset_index(drop=True), "Query file q.csv")
    checked = check_queries(frame.iloc[:2])
    assert checked["n_cells"].tolist() == [100, 100] and checked["n_cells"].dtype == np.int64
