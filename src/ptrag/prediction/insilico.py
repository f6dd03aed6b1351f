"""In-silico prediction: perturbations never measured, from control cells alone."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from ptrag.data.dataset import BATCH, CELL_TYPE, PerturbationDataset
from ptrag.data.sets import CellSet
from ptrag.errors import DataError, format_list
from ptrag.prediction.predict import (
    MIN_SETS_PER_BATCH,
    Prediction,
    predicted_obs,
    predictor,
    run_sets,
    to_anndata,
)
from ptrag.run.checkpoint import Checkpoint

DEFAULT_CELLS_PER_QUERY = 100


def _line_list(lines: np.ndarray, limit: int = 20) -> str:
    shown = ", ".join(str(int(n)) for n in lines[:limit])
    return shown + (f", … ({len(lines) - limit} more)" if len(lines) > limit else "")


def read_queries(path: str | Path) -> pd.DataFrame:
    """Read and check a query CSV: columns cell_type, perturbation and optional n_cells (≥ 1)."""
    try:
        queries = pd.read_csv(path)
    except (OSError, ValueError) as exc:
        raise DataError(f"Cannot read the query file {path}: {exc}") from exc
    missing = {"cell_type", "perturbation"} - set(queries.columns)
    if missing:
        raise DataError(
            f"Query file {path} needs columns cell_type and perturbation (optional n_cells); "
            f"missing {sorted(missing)}, present {list(queries.columns)}."
        )
    if queries.empty:
        raise DataError(f"Query file {path} has a header but no queries; add one row per prediction.")
    # CSV line numbers (header is line 1) point the user at the exact rows to fix.
    lines = queries.index.to_numpy() + 2
    blank = queries[["cell_type", "perturbation"]].isna().any(axis=1).to_numpy()
    if blank.any():
        raise DataError(
            f"Query file {path} has empty cell_type or perturbation on line(s) {_line_list(lines[blank])}."
        )
    if "n_cells" not in queries:
        queries["n_cells"] = DEFAULT_CELLS_PER_QUERY
    counts = pd.to_numeric(queries["n_cells"], errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(counts) | (counts < 1) | (counts != np.round(counts))
    if bad.any():
        raise DataError(
            f"Query file {path}: n_cells must be a whole number ≥ 1; bad value(s) "
            f"{format_list(queries['n_cells'][bad])} on line(s) {_line_list(lines[bad])}."
        )
    queries["n_cells"] = counts.astype(np.int64)
    return queries


def check_control_cell_types(dataset: PerturbationDataset, cell_types: Iterable[str]) -> None:
    """Fail naming every requested cell type without control cells, and those that have some."""
    with_controls = set(dataset.obs[CELL_TYPE].astype(str).to_numpy()[dataset.is_control])
    unknown = sorted(set(cell_types) - with_controls)
    if unknown:
        raise DataError(
            f"No control cells for the query cell type(s) {format_list(unknown)}; in-silico prediction "
            "starts from controls of the same cell type. "
            f"Cell types with controls: {format_list(sorted(with_controls))}."
        )


def sets_from_controls(
    cell_type: str, perturbation: str, cells: np.ndarray, set_len: int, batches: np.ndarray
) -> list[CellSet]:
    """``cells`` (control rows) cut into sets of ``set_len``; the last is wrapped to a full set and
    only its ``n_real`` leading predictions are kept."""
    sets = []
    for start in range(0, len(cells), set_len):
        chunk = cells[start : start + set_len]
        padded = np.resize(chunk, set_len)
        sets.append(CellSet(cell_type, perturbation, batches[padded[0]], padded, padded, len(chunk)))
    return sets


def _query_sets(
    dataset: PerturbationDataset, queries: pd.DataFrame, set_len: int, seed: int
) -> list[CellSet]:
    rng = np.random.default_rng(seed)
    batches = dataset.obs[BATCH].astype(str).to_numpy()
    check_control_cell_types(dataset, queries["cell_type"].astype(str))
    sets: list[CellSet] = []
    for row in queries.itertuples(index=False):
        pool = dataset.conditions.controls(str(row.cell_type))
        n = int(row.n_cells)
        cells = rng.choice(pool, size=n, replace=n > len(pool))
        sets += sets_from_controls(str(row.cell_type), str(row.perturbation), cells, set_len, batches)
    return sets


def predict_queries(
    checkpoint: Checkpoint,
    dataset: PerturbationDataset,
    queries: pd.DataFrame,
    seed: int = 0,
    progress: bool = True,
) -> Prediction:
    """Predict ``n_cells`` cells for each (cell type, perturbation) query from control cells."""
    sets = _query_sets(dataset, queries, checkpoint.config.train.cell_set_len, seed)
    run = predictor(
        checkpoint,
        dataset,
        queries["perturbation"].astype(str).tolist(),
        queries["cell_type"].astype(str).tolist(),
    )
    dataset = run.dataset
    missing = sorted(set(queries["perturbation"].astype(str)) - set(run.spec.vocabulary))
    if missing:
        raise DataError(
            f"No gene embedding for the perturbations {format_list(missing)}; cannot predict them."
        )
    predicted, record = run_sets(run.model, sets, run.tensorize, MIN_SETS_PER_BATCH, progress=progress)
    obs = predicted_obs(dataset, sets)
    obs.index = [f"pred_{i}" for i in range(len(obs))]
    uns = {"control_label": dataset.control_label, "split": "in_silico", "arm": checkpoint.config.model.arm}
    return Prediction(to_anndata(np.vstack(predicted), obs, run.spec.genes, uns), None, record)
