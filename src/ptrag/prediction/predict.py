"""Held-out prediction: every cell of a split's groups, n-matched to the real cells, beside them."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import anndata as ad
import numpy as np
import pandas as pd

from ptrag.data.dataset import BATCH, CELL_TYPE, PerturbationDataset
from ptrag.data.sets import CellSet, SetSampler, draw_controls
from ptrag.errors import DataError
from ptrag.keys import BATCH_COL, CELL_TYPE_COL, CONTROL_BARCODE_COL, PERT_COL, UNS_KEY
from ptrag.prediction.core import predictor, run_sets
from ptrag.run.checkpoint import Checkpoint

__all__ = [
    "MAX_CONTROLS_PER_CELL_TYPE",
    "Prediction",
    "check_prediction_size",
    "predict_sets",
    "predicted_obs",
    "to_anndata",
]

# Control cells written beside the predictions, per cell type (cell-eval computes deltas and DE
# against them); capped so that million-cell screens still give files of a sensible size.
MAX_CONTROLS_PER_CELL_TYPE = 5000
# Predicted values (float32) one prediction may hold in memory: beyond this, ask for fewer cells.
MAX_PREDICTED_VALUES = 500_000_000


def check_prediction_size(n_cells: int, n_genes: int, what: str, advice: str) -> None:
    """Refuse, before any work, a prediction whose ``n_cells`` × ``n_genes`` float32 values exceed
    ``MAX_PREDICTED_VALUES`` (2 GB): ``what`` names the request, ``advice`` what to do instead."""
    if n_cells * n_genes > MAX_PREDICTED_VALUES:
        raise DataError(
            f"{what} needs {n_cells * n_genes * 4 / 1e9:.1f} GB of memory for the predicted cells "
            f"({n_cells:,} cells × {n_genes:,} genes as float32; the limit is "
            f"{MAX_PREDICTED_VALUES * 4 / 1e9:.0f} GB): {advice}"
        )


class DirectoryWriter(Protocol):
    """Something that writes its own file into a directory (the reference shifts)."""

    def write_into(self, directory: Path) -> Path: ...


@dataclass
class Prediction:
    """Predicted cells (and, for held-out groups, the real ones) plus the retrieval record.

    Unpacks as ``adata_pred, adata_real = prediction``.
    """

    adata_pred: ad.AnnData
    adata_real: ad.AnnData | None
    retrieval: pd.DataFrame
    # For held-out groups: the simple references' shifts (``ptrag.evaluation.ReferenceShifts``),
    # written beside the cells so that ``ptrag evaluate`` scores them next to the model.
    references: DirectoryWriter | None = None

    def __iter__(self) -> Iterator[ad.AnnData | None]:
        return iter((self.adata_pred, self.adata_real))

    def write(self, out_dir: str | Path, overwrite: bool = False) -> Path:
        """Write adata_pred.h5ad, adata_real.h5ad, retrieval.csv and, for held-out groups,
        references.npz; ``out_dir`` is replaced atomically."""
        from ptrag.prediction.write import write_prediction

        return write_prediction(self, out_dir, overwrite=overwrite)


def _control_cells(dataset: PerturbationDataset, cell_types: Sequence[str], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    chosen = []
    for cell_type in sorted(set(cell_types)):
        cells = dataset.conditions.controls(cell_type)
        if len(cells) > MAX_CONTROLS_PER_CELL_TYPE:
            cells = np.sort(draw_controls(cells, MAX_CONTROLS_PER_CELL_TYPE, rng))
        chosen.append(cells)
    return np.concatenate(chosen) if chosen else np.zeros(0, dtype=np.int64)


def predicted_obs(dataset: PerturbationDataset, sets: Sequence[CellSet]) -> pd.DataFrame:
    """obs of the predicted cells: one row per real cell of each set, with the control it started from."""
    names = dataset.obs.index.to_numpy()
    batches = dataset.obs[BATCH].astype(str).to_numpy()
    return pd.DataFrame(
        {
            PERT_COL: np.concatenate([[s.perturbation] * s.n_real for s in sets]),
            CELL_TYPE_COL: np.concatenate([[s.cell_type] * s.n_real for s in sets]),
            BATCH_COL: np.concatenate([batches[s.control_idx[: s.n_real]] for s in sets]),
            CONTROL_BARCODE_COL: np.concatenate([names[s.control_idx[: s.n_real]] for s in sets]),
        }
    )


def to_anndata(
    values: np.ndarray, obs: pd.DataFrame, genes: Sequence[str], uns: dict[str, object]
) -> ad.AnnData:
    obs = obs.astype({c: "category" for c in obs.columns})
    adata = ad.AnnData(X=values.astype(np.float32, copy=False), obs=obs)
    adata.var_names = pd.Index(list(genes))
    adata.uns[UNS_KEY] = uns
    return adata


def predict_sets(
    checkpoint: Checkpoint,
    dataset: PerturbationDataset,
    groups: Sequence[tuple[str, str]],
    *,
    seed: int = 0,
    role: str = "test",
    progress: bool = True,
    with_real: bool = True,
) -> Prediction:
    """Predict every cell of each (cell type, perturbation) group, n-matched to the real cells.

    Groups whose perturbation the run cannot embed (``embedding.missing = drop``) are left out, as
    training left them out, with one warning line (:meth:`Predictor.embedded`).
    """
    run = predictor(checkpoint, dataset, [p for _, p in groups], [c for c, _ in groups])
    dataset = run.dataset
    embedded = set(run.embedded([p for _, p in groups], f"{role} group(s)"))
    usable = [(c, p) for c, p in groups if p in embedded]
    sampler = SetSampler(dataset, usable, checkpoint.config.train.cell_set_len, seed)
    sets = sampler.fixed_sets()
    predicted, record = run_sets(run, sets, progress, seed=seed)

    control_cells = _control_cells(dataset, [c for c, _ in usable], seed)
    label = dataset.control_label
    obs_cells = dataset.obs.index.to_numpy()
    batches = dataset.obs[BATCH].astype(str).to_numpy()
    cell_types = dataset.obs[CELL_TYPE].astype(str).to_numpy()
    pert_rows = predicted_obs(dataset, sets)
    control_rows = pd.DataFrame(
        {
            PERT_COL: label,
            CELL_TYPE_COL: cell_types[control_cells],
            BATCH_COL: batches[control_cells],
            CONTROL_BARCODE_COL: obs_cells[control_cells],
        }
    )
    control_values = dataset.expression.rows(control_cells)
    uns = run.metadata(role)
    pred_obs = pd.concat([pert_rows, control_rows], ignore_index=True)
    pred_obs.index = [f"pred_{i}" for i in range(len(pred_obs))]
    adata_pred = to_anndata(np.vstack([*predicted, control_values]), pred_obs, run.spec.genes, uns)
    adata_real = None
    if with_real:
        real_idx = np.concatenate([s.target_idx[: s.n_real] for s in sets])
        real_obs = pert_rows.drop(columns=CONTROL_BARCODE_COL).copy()
        real_obs[BATCH_COL] = batches[real_idx]
        real_obs = pd.concat([real_obs, control_rows.drop(columns=CONTROL_BARCODE_COL)], ignore_index=True)
        real_obs.index = np.concatenate([obs_cells[real_idx], obs_cells[control_cells]]).astype(str)
        real_values = np.vstack([dataset.expression.rows(real_idx), control_values])
        adata_real = to_anndata(real_values, real_obs, run.spec.genes, {**uns, "arm": "real"})
    return Prediction(adata_pred, adata_real, record)
