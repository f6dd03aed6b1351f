"""Write a prediction directory: cell-eval's adata files plus the retrieval record."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from ptrag.data.dataset import PerturbationDataset
from ptrag.io import atomic_path, h5ad_strings, staged_output
from ptrag.keys import UNS_KEY
from ptrag.prediction.predict import MAX_CONTROLS_PER_CELL_TYPE, Prediction

__all__ = ["held_out_prediction_bytes", "prediction_bytes", "write_prediction"]

FLOAT32_BYTES = 4


def prediction_bytes(n_genes: int, n_query_cells: int) -> int:
    """About the size of an in-silico prediction's files: adata_pred's float32 values."""
    return n_query_cells * n_genes * FLOAT32_BYTES


def held_out_prediction_bytes(
    dataset: PerturbationDataset, groups: Sequence[tuple[str, str]], n_genes: int
) -> int:
    """About the size of a held-out prediction's files: adata_pred and adata_real, each holding the
    groups' cells and up to MAX_CONTROLS_PER_CELL_TYPE controls per cell type, as float32."""
    conditions = dataset.conditions
    perturbed = sum(len(conditions.cells(group)) for group in groups)
    controls = sum(
        min(len(conditions.controls(c)), MAX_CONTROLS_PER_CELL_TYPE) for c in {c for c, _ in groups}
    )
    return 2 * (perturbed + controls) * n_genes * FLOAT32_BYTES


def write_prediction_files(prediction: Prediction, directory: Path) -> None:
    """adata_pred.h5ad, adata_real.h5ad and references.npz (held-out groups only), retrieval.csv
    and, for queries, query_effects.csv (each query's effect size and 90 % interval) into
    ``directory``."""
    with h5ad_strings():
        with atomic_path(directory / "adata_pred.h5ad") as tmp:
            prediction.adata_pred.write_h5ad(tmp)
        if prediction.adata_real is not None:
            with atomic_path(directory / "adata_real.h5ad") as tmp:
                prediction.adata_real.write_h5ad(tmp)
    if not prediction.retrieval.empty:
        with atomic_path(directory / "retrieval.csv") as tmp:
            prediction.retrieval.to_csv(tmp, index=False)
    if prediction.references is not None:
        prediction.references.write_into(directory)
    effects = prediction.adata_pred.uns.get(UNS_KEY, {}).get("query_effects")
    if effects is not None:
        with atomic_path(directory / "query_effects.csv") as tmp:
            pd.DataFrame(effects).to_csv(tmp, index=False, float_format="%.6g")


def write_prediction(prediction: Prediction, out_dir: str | Path, overwrite: bool = False) -> Path:
    """Write into a staging directory that replaces ``out_dir`` only once every file is complete."""
    with staged_output(out_dir, overwrite=overwrite) as staging:
        write_prediction_files(prediction, staging)
    return Path(out_dir)
