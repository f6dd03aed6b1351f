"""In-silico prediction: perturbations never measured, from control cells alone."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd

from ptrag.data.dataset import BATCH, CELL_TYPE, PerturbationDataset
from ptrag.data.sets import CellSet, draw_controls
from ptrag.errors import DataError, format_list
from ptrag.keys import CELL_TYPE_COL, PERT_COL
from ptrag.prediction.core import Predictor, group_control_rows, predictor, run_sets
from ptrag.prediction.effect_interval import (
    EFFECT_COLUMNS,
    EffectInterval,
    calibrate_effect_interval,
    effect_columns,
    nearest_measured,
)
from ptrag.prediction.predict import Prediction, check_prediction_size, predicted_obs, to_anndata
from ptrag.run.checkpoint import Checkpoint

__all__ = [
    "check_control_cell_types",
    "check_queries",
    "check_query_size",
    "predict_queries",
    "read_queries",
    "sets_from_controls",
]

DEFAULT_CELLS_PER_QUERY = 100


def _line_list(lines: np.ndarray, limit: int = 20) -> str:
    shown = ", ".join(str(n) for n in lines[:limit])
    return shown + (f", … ({len(lines) - limit} more)" if len(lines) > limit else "")


def read_queries(path: str | Path) -> pd.DataFrame:
    """Read and check a query CSV: columns cell_type, perturbation and optional n_cells (≥ 1)."""
    try:
        queries = pd.read_csv(path)
    except (OSError, ValueError) as exc:
        raise DataError(f"Cannot read the query file {path}: {exc}") from exc
    return check_queries(queries, f"Query file {path}")


def check_queries(queries: object, source: str = "The queries DataFrame") -> pd.DataFrame:
    """A checked copy of in-silico queries: columns cell_type and perturbation (str), n_cells (a
    whole number ≥ 1, default 100), each (cell type, perturbation) once. Every problem is a
    :class:`DataError` naming the rows (a file's CSV line numbers, a DataFrame's index labels)."""
    if not isinstance(queries, pd.DataFrame):
        raise DataError(
            "queries must be a pandas DataFrame with columns cell_type, perturbation and optional "
            f"n_cells; got {type(queries).__name__}."
        )
    is_file = source.startswith("Query file")
    missing = {"cell_type", "perturbation"} - set(queries.columns)
    if missing:
        raise DataError(
            f"{source} needs columns cell_type and perturbation (optional n_cells); "
            f"missing {sorted(missing)}, present {[str(c) for c in queries.columns]}."
        )
    if queries.empty:
        what = "a header but no queries" if is_file else "no rows"
        raise DataError(f"{source} has {what}; add one row per prediction.")
    queries = queries.copy()
    # CSV line numbers (header is line 1), or the DataFrame's own labels, name the rows to fix.
    lines = queries.index.to_numpy() + 2 if is_file else queries.index.to_numpy()
    where = "line(s)" if is_file else "row(s)"
    blank = queries[["cell_type", "perturbation"]].isna().any(axis=1).to_numpy()
    if blank.any():
        raise DataError(
            f"{source} has empty cell_type or perturbation on {where} {_line_list(lines[blank])}."
        )
    if "n_cells" not in queries:
        queries["n_cells"] = DEFAULT_CELLS_PER_QUERY
    counts = pd.to_numeric(queries["n_cells"], errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(counts) | (counts < 1) | (counts != np.round(counts))
    if bad.any():
        raise DataError(
            f"{source}: n_cells must be a whole number ≥ 1; bad value(s) "
            f"{format_list(queries['n_cells'][bad])} on {where} {_line_list(lines[bad])}."
        )
    queries["n_cells"] = counts.astype(np.int64)
    for column in ("cell_type", "perturbation"):
        queries[column] = queries[column].astype(str)
    pairs = queries["cell_type"] + "/" + queries["perturbation"]
    repeated = pairs.duplicated(keep=False).to_numpy()
    if repeated.any():
        names = list(dict.fromkeys(pairs[repeated]))
        raise DataError(
            f"{source} asks for the same (cell_type, perturbation) more than once: "
            f"{format_list(names)} on {where} {_line_list(lines[repeated])}. List each once; "
            "n_cells sets how many cells it gets."
        )
    return queries


def check_query_size(queries: pd.DataFrame, n_genes: int) -> None:
    """Refuse, before any work, queries whose predicted cells would not fit in memory."""
    total = int(queries["n_cells"].sum())
    check_prediction_size(
        total,
        n_genes,
        f"Predicting {total:,} cells (n_cells summed over {len(queries)} queries)",
        "lower n_cells, or predict the queries in several runs.",
    )


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
        cells = draw_controls(pool, n, rng)
        sets += sets_from_controls(str(row.cell_type), str(row.perturbation), cells, set_len, batches)
    return sets


def predict_queries(
    checkpoint: Checkpoint,
    dataset: PerturbationDataset,
    queries: pd.DataFrame,
    seed: int = 0,
    progress: bool = True,
) -> Prediction:
    """Predict ``n_cells`` cells for each (cell type, perturbation) query from control cells;
    ``queries`` is checked like a query file (:func:`check_queries`, :func:`check_query_size`)."""
    queries = check_queries(queries)
    check_query_size(queries, len(checkpoint.spec.genes))
    run = predictor(
        checkpoint,
        dataset,
        queries["perturbation"].astype(str).tolist(),
        queries["cell_type"].astype(str).tolist(),
    )
    dataset = run.dataset
    embedded = set(run.embedded(queries["perturbation"].astype(str).tolist(), "query(ies)"))
    queries = queries[queries["perturbation"].astype(str).isin(embedded)].reset_index(drop=True)
    sets = _query_sets(dataset, queries, checkpoint.config.train.cell_set_len, seed)
    predicted, record = run_sets(run, sets, progress=progress, seed=seed)
    obs = predicted_obs(dataset, sets)
    obs.index = [f"pred_{i}" for i in range(len(obs))]
    cells = np.vstack(predicted)
    interval = calibrate_effect_interval(checkpoint, dataset, checkpoint.config.train.cell_set_len, seed)
    uns = run.metadata(
        "in_silico",
        query_effects=_query_effects(cells, obs, queries, sets, run, interval),
        effect_interval={} if interval is None else asdict(interval),
    )
    return Prediction(to_anndata(cells, obs, run.spec.genes, uns), None, record)


def _query_effects(
    cells: np.ndarray,
    obs: pd.DataFrame,
    queries: pd.DataFrame,
    sets: Sequence[CellSet],
    run: Predictor,
    interval: EffectInterval | None,
) -> dict[str, np.ndarray]:
    """Per query, as a screen reports each gene: the effect size of its predicted cells (L2 norm
    of their mean minus the anchor of the control cells they were predicted from: the cell type's
    control mean, or its batches' under ``model.anchor = "batch_pool"``), the expected effect and
    its interval (NaN without calibration)."""
    positions = obs.astype(str).groupby([CELL_TYPE_COL, PERT_COL]).indices
    controls = group_control_rows(sets, min_sets=1)
    effects = []
    for row in queries.itertuples(index=False):
        key = (str(row.cell_type), str(row.perturbation))
        mean = cells[positions[key]].mean(axis=0)
        anchor = run.tensorize.anchor_means(key[0], controls[key])
        effects.append(float(np.linalg.norm(mean - anchor)))
    perturbations = queries["perturbation"].astype(str).tolist()
    _, cosine = nearest_measured(run.spec, perturbations)
    effect = np.array(effects)
    columns = zip(EFFECT_COLUMNS, effect_columns(interval, effect, cosine), strict=True)
    return {
        "cell_type": queries["cell_type"].astype(str).to_numpy(),
        "perturbation": np.array(perturbations),
        "effect_size": effect,
        "nearest_cosine": np.asarray(cosine, dtype=float),
        **{name: np.asarray(values, dtype=float) for name, values in columns},
    }
