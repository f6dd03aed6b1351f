"""Gene alignment of new data to a checkpoint, and in-silico prediction of never-measured genes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import torch

from ptrag.config import load_config
from ptrag.data.loading import load_dataset
from ptrag.errors import DataError
from ptrag.prediction.genes import align_genes

TINY_OVERRIDES = (
    "model.arm=ptrag",
    "model.hidden_dim=16",
    "model.n_layers=1",
    "train.max_steps=5",
    "train.num_threads=1",
    "train.cell_set_len=16",
    "train.val_every=1000",
)


# --- align_genes --------------------------------------------------------------------------------------


@pytest.fixture
def small(write_screen):
    return load_dataset(write_screen(n_hvg=None, n_genes=12))


def test_identical_gene_list_returns_the_dataset_itself(small) -> None:
    assert align_genes(small, list(small.genes)) is small


def test_reordered_genes_are_gathered_into_the_model_order(small) -> None:
    order = np.random.default_rng(0).permutation(small.n_genes)
    genes = [small.genes[i] for i in order]
    aligned = align_genes(small, genes)
    rows = np.array([0, 5, 17, 40])
    assert aligned.genes == tuple(genes)
    assert aligned.expression.shape == (small.n_cells, small.n_genes)
    values = aligned.expression.rows(rows)
    np.testing.assert_array_equal(values, small.expression.rows(rows)[:, order])
    assert values.flags["C_CONTIGUOUS"] and values.dtype == np.float32
    assert aligned.obs is small.obs


def test_extra_genes_in_the_data_are_dropped_with_a_warning(small, caplog) -> None:
    genes = list(small.genes[2:])[::-1]
    aligned = align_genes(small, genes)
    assert aligned.genes == tuple(genes)
    np.testing.assert_array_equal(
        aligned.expression.rows(np.arange(3)), small.expression.rows(np.arange(3))[:, 2:][:, ::-1]
    )
    assert "Ignoring 2 genes" in caplog.text
    assert repr(small.genes[0]) in caplog.text and repr(small.genes[1]) in caplog.text


def test_missing_and_extra_genes_are_named(small) -> None:
    genes = ["NEWGENE_A", *small.genes[1:-1], "NEWGENE_B"]  # lacks the first and last data genes
    with pytest.raises(DataError) as info:
        align_genes(small, genes, what="run X")
    message = str(info.value)
    assert f"lacks 2 of the {len(genes)} genes run X was trained on: 'NEWGENE_A', 'NEWGENE_B'" in message
    assert f"it has 2 genes the model does not know: {small.genes[0]!r}, {small.genes[-1]!r}" in message
    assert "ptrag.Model.load(RUN).genes" in message


# --- in-silico prediction -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory):
    """A tiny screen, a 5-step PT-RAG run on it, and a gene that is in the bundled embeddings only."""
    from ptrag.data.splits import Split
    from ptrag.embeddings.bundled import load_gene_table
    from ptrag.simulation import simulate
    from ptrag.training.run import train

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("insilico")
    simulate("tiny", seed=0, out_dir=root / "screen")
    config = load_config("cpu-small", list(TINY_OVERRIDES))
    dataset = load_dataset(root / "screen" / "data.h5ad", config.data)
    train(config, dataset, Split.read(root / "screen" / "split.toml"), root / "run", progress=False)
    screened = set(dataset.obs["perturbation"].astype(str))
    new_gene = next(g for g in load_gene_table()["symbol"] if g not in screened)
    return root, dataset, new_gene


def _queries(new_gene: str) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "cell_type": ["k562", "rpe1", "k562"],
            "perturbation": [new_gene, new_gene, "PSMA4"],
            "n_cells": [20, 7, 3],
        }
    )


def test_never_measured_gene_is_predicted_from_controls(tiny) -> None:
    from ptrag.prediction.insilico import predict_queries
    from ptrag.run.checkpoint import Checkpoint

    root, dataset, new_gene = tiny
    trained = Checkpoint.load(root / "run")
    assert new_gene not in trained.spec.vocabulary
    prediction = predict_queries(trained, dataset, _queries(new_gene), seed=0)
    pred = prediction.adata_pred
    assert prediction.adata_real is None
    assert pred.n_obs == 30 and pred.n_vars == dataset.n_genes
    assert list(pred.var_names) == list(trained.spec.genes) == list(dataset.genes)
    assert {"target_gene", "cell_type", "batch", "control_barcode"} <= set(pred.obs.columns)
    counts = pred.obs.groupby(["target_gene", "cell_type"], observed=True).size().to_dict()
    assert counts == {(new_gene, "k562"): 20, (new_gene, "rpe1"): 7, ("PSMA4", "k562"): 3}
    # Every predicted cell starts from a real control cell of its own cell type and batch.
    source = dataset.obs.loc[pred.obs["control_barcode"].astype(str)]
    assert (source["perturbation"].astype(str) == dataset.control_label).all()
    assert (source["cell_type"].astype(str).to_numpy() == pred.obs["cell_type"].astype(str).to_numpy()).all()
    assert (source["batch"].astype(str).to_numpy() == pred.obs["batch"].astype(str).to_numpy()).all()
    assert np.isfinite(pred.X).all() and pred.X.dtype == np.float32
    # The retrieval record shows the new gene's candidates, all from the training database.
    record = prediction.retrieval
    database = set(trained.spec.database.perturbations)
    assert new_gene in set(record["perturbation"])
    assert set(record["candidate"]) <= database


def test_same_seed_gives_bit_identical_predictions_and_another_seed_does_not(tiny) -> None:
    from ptrag.prediction.insilico import predict_queries
    from ptrag.run.checkpoint import Checkpoint

    root, dataset, new_gene = tiny
    runs = [
        predict_queries(Checkpoint.load(root / "run"), dataset, _queries(new_gene), seed=seed).adata_pred
        for seed in (5, 5, 6)
    ]
    assert runs[0].X.tobytes() == runs[1].X.tobytes()
    assert runs[0].obs.equals(runs[1].obs)
    assert not np.array_equal(runs[0].obs["control_barcode"], runs[2].obs["control_barcode"])


def test_predict_command_in_two_fresh_processes_is_bit_identical(tiny, tmp_path) -> None:
    root, _, new_gene = tiny
    queries = tmp_path / "queries.csv"
    _queries(new_gene).to_csv(queries, index=False)
    outputs = []
    for name in ("a", "b"):
        command = [
            sys.executable,
            "-m",
            "ptrag.cli.main",
            "predict",
            str(root / "run"),
            "--data",
            str(root / "screen" / "data.h5ad"),
            "--queries",
            str(queries),
            "--out",
            str(tmp_path / name),
            "--no-progress",
        ]
        finished = subprocess.run(command, capture_output=True, text=True, timeout=300)
        assert finished.returncode == 0, finished.stderr
        assert "predicted 30 cells" in finished.stdout
        outputs.append(ad.read_h5ad(tmp_path / name / "adata_pred.h5ad"))
    first, second = outputs
    assert first.n_obs == 30 and list(first.var_names) == list(second.var_names)
    assert first.X.tobytes() == second.X.tobytes()
    # Each query's effect size and interval, as a table beside the cells.
    effects = [(tmp_path / name / "query_effects.csv").read_text() for name in ("a", "b")]
    assert effects[0] == effects[1]
    table = pd.read_csv(tmp_path / "a" / "query_effects.csv")
    assert list(table.columns) == [
        "cell_type", "perturbation", "effect_size", "nearest_cosine", "expected_effect", "effect_low",
        "effect_high",
    ]
    assert len(table) == len(_queries(new_gene)) and (table["effect_size"] > 0).all()
    assert first.obs.equals(second.obs)
    assert (
        Path(tmp_path / "a" / "retrieval.csv").read_bytes()
        == Path(tmp_path / "b" / "retrieval.csv").read_bytes()
    )
