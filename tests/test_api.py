"""``ptrag.Model``: the one public class for notebooks and the command line."""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import numpy as np
import pytest

from ptrag import Model
from ptrag.errors import CheckpointError, OutputError

SMALL = [
    "model.hidden_dim=16",
    "model.n_layers=1",
    "model.n_heads=2",
    "retrieval.top_k=8",
    "train.max_steps=12",
    "train.sets_per_batch=4",
    "train.cell_set_len=16",
    "train.val_every=4",
    "train.num_threads=1",
]


@pytest.fixture(scope="module")
def screen(tiny_screen: Path) -> Path:
    return tiny_screen


def test_fit_predict_save_load(screen: Path, tmp_path: Path) -> None:
    model = Model.from_config("cpu-small", SMALL, arm="ptrag_paper")
    assert model.config.retrieval.combine == "replace_sum"  # the arm's own setting
    with pytest.raises(CheckpointError, match="not been trained"):
        model.predict(screen / "data.h5ad")
    adata = ad.read_h5ad(screen / "data.h5ad")
    model.fit(adata, screen / "split.toml", tmp_path / "run", progress=False)  # in-memory AnnData
    assert model.outcome.steps == 12 and model.run_dir == tmp_path / "run"
    assert model.checkpoint.step == model.outcome.best_step and model.config.model.arm == "ptrag_paper"

    prediction = model.predict(screen / "data.h5ad", split="test", progress=False)
    adata_pred, adata_real = prediction  # unpacks like the pair it is
    assert list(adata_pred.var_names) == list(model.genes) == list(adata_real.var_names)
    assert adata_pred.uns["ptrag"]["checkpoint"].endswith("best.ckpt")
    assert not prediction.retrieval.empty
    written = prediction.write(tmp_path / "pred")
    # API users get the references' shifts too, so `ptrag evaluate` scores the bar beside the model.
    assert sorted(p.name for p in written.iterdir()) == [
        "adata_pred.h5ad",
        "adata_real.h5ad",
        "references.npz",
        "retrieval.csv",
    ]

    copy = model.save(tmp_path / "copy")
    with pytest.raises(OutputError, match="--overwrite"):
        model.save(tmp_path / "copy")
    again = Model.load(copy)
    reloaded, _ = again.predict(screen / "data.h5ad", progress=False)
    np.testing.assert_array_equal(reloaded.X, adata_pred.X)
    last = Model.load(copy, checkpoint="last")
    assert last.checkpoint.step == 12 and last.checkpoint.path.name == "last.ckpt"
    assert last.predict(screen / "data.h5ad", progress=False).adata_pred.uns["ptrag"]["checkpoint_step"] == 12


def test_the_cli_predicts_with_the_best_checkpoint_unless_told_last(screen: Path, tmp_path: Path) -> None:
    from ptrag.cli.main import main

    run = tmp_path / "run"
    Model.from_config("cpu-small", SMALL, arm="st").fit(
        screen / "data.h5ad", screen / "split.toml", run, progress=False
    )
    base = ["predict", str(run), "--data", str(screen / "data.h5ad"), "--no-progress", "--out"]
    assert main([*base, str(tmp_path / "best")]) == 0
    assert main([*base, str(tmp_path / "last"), "--checkpoint", "last"]) == 0
    best = ad.read_h5ad(tmp_path / "best" / "adata_pred.h5ad").uns["ptrag"]
    last = ad.read_h5ad(tmp_path / "last" / "adata_pred.h5ad").uns["ptrag"]
    assert best["checkpoint"] == str(run / "checkpoints" / "best.ckpt")
    assert last["checkpoint"] == str(run / "checkpoints" / "last.ckpt") and last["checkpoint_step"] == 12
