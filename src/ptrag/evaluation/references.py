"""Reference predictors scored beside every method: ``control``, ``train_mean`` and ``noise_floor``.

Each builds pred-like AnnData with the same conditions as the real file and, per condition, as many
predicted cells as real cells (n-matched), so that W1/W2 — which depend on n — compare fairly.

- ``control``: for each (cell type, perturbation), n control cells of that cell type drawn
  (seeded, without replacement when the pool is large enough) from the real file's controls,
  unchanged.
- ``train_mean``: those same control cells plus the cell type's mean training shift
  (mean over training perturbations of perturbed mean − control mean), not clipped.
- ``noise_floor``: the real cells of each condition split into two random halves, one scored as
  the prediction of the other (n/2 vs n/2; both files keep the full control pool). It shows the
  sampling noise of the data; for W1/W2 it is *not* a lower bound on an n-vs-n score.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from ptrag.data.dataset import PerturbationDataset
from ptrag.errors import DataError

REFERENCES: tuple[str, ...] = ("control", "train_mean", "noise_floor")


def _rows_by_condition(
    adata: Any, pert_col: str, celltype_col: str
) -> dict[tuple[str, str], NDArray[np.intp]]:
    keys = pd.MultiIndex.from_arrays(
        [adata.obs[celltype_col].astype(str).to_numpy(), adata.obs[pert_col].astype(str).to_numpy()]
    )
    return {
        (str(c), str(p)): np.asarray(rows)
        for (c, p), rows in pd.Series(range(adata.n_obs)).groupby(keys).groups.items()
    }


def _dense(x: Any) -> NDArray[np.float32]:
    return np.asarray(x.toarray() if hasattr(x, "toarray") else x, dtype=np.float32)


def _build(
    real: Any,
    blocks: list[NDArray[np.float32]],
    obs_rows: list[pd.DataFrame],
    arm: str,
    control_label: str,
) -> Any:
    import anndata as ad

    obs = pd.concat(obs_rows, ignore_index=True)
    obs.index = [f"{arm}-{i}" for i in range(len(obs))]
    out = ad.AnnData(X=np.concatenate(blocks).astype(np.float32), obs=obs, var=real.var.copy())
    out.uns["ptrag"] = {"control_label": control_label, "split": "test", "arm": arm}
    return out


def _shifted_controls(
    real: Any,
    control_label: str,
    pert_col: str,
    celltype_col: str,
    shifts: Mapping[str, NDArray[np.floating]] | None,
    arm: str,
    seed: int,
) -> Any:
    rng = np.random.default_rng(seed)
    x = _dense(real.X)
    groups = _rows_by_condition(real, pert_col, celltype_col)
    blocks: list[NDArray[np.float32]] = []
    obs_rows: list[pd.DataFrame] = []
    for (cell_type, perturbation), rows in sorted(groups.items()):
        pool = groups.get((cell_type, control_label))
        if pool is None or pool.size == 0:
            raise DataError(
                f"Cell type {cell_type!r} has no {control_label!r} cells to build the {arm} reference."
            )
        if perturbation == control_label:
            chosen = pool
        else:
            chosen = rng.choice(pool, size=rows.size, replace=rows.size > pool.size)
        cells = x[chosen].copy()
        if shifts is not None and perturbation != control_label:
            if cell_type not in shifts:
                raise DataError(f"No mean training shift for cell type {cell_type!r} (train_mean reference).")
            cells += np.asarray(shifts[cell_type], dtype=np.float32)[None, :]
        blocks.append(cells)
        obs = pd.DataFrame({pert_col: perturbation, celltype_col: cell_type}, index=range(len(chosen)))
        obs["control_barcode"] = np.asarray(real.obs_names)[chosen]
        if "batch" in real.obs.columns:
            obs["batch"] = real.obs["batch"].to_numpy()[chosen]
        obs_rows.append(obs)
    return _build(real, blocks, obs_rows, arm, control_label)


def control_reference(
    real: Any,
    control_label: str,
    pert_col: str = "target_gene",
    celltype_col: str = "cell_type",
    seed: int = 0,
) -> Any:
    """Pred-like AnnData: n unchanged control cells of the same cell type per condition."""
    return _shifted_controls(real, control_label, pert_col, celltype_col, None, "control", seed)


def train_mean_reference(
    real: Any,
    shifts: Mapping[str, NDArray[np.floating]],
    control_label: str,
    pert_col: str = "target_gene",
    celltype_col: str = "cell_type",
    seed: int = 0,
) -> Any:
    """Pred-like AnnData: the ``control`` reference's cells plus the cell type's mean training shift.

    With the same seed it draws exactly the same control cells as :func:`control_reference`.
    """
    return _shifted_controls(real, control_label, pert_col, celltype_col, shifts, "train_mean", seed)


def mean_training_shifts(
    dataset: PerturbationDataset, train_mask: NDArray[np.bool_]
) -> dict[str, NDArray[np.float32]]:
    """Per cell type: mean over training perturbations of (perturbed mean − control mean).

    ``train_mask`` marks the training cells; control cells always count as controls, and no held-out
    cell enters the reference. The per-(perturbation, cell type) shifts are the response memory's rows,
    computed in chunks, so the expression matrix is never densified.
    """
    from ptrag.retrieval import ResponseMemory

    memory = ResponseMemory.from_training_cells(dataset, train_mask)
    cell_types = np.array(memory.cell_types)
    return {str(c): memory.shifts[cell_types == c].mean(axis=0) for c in np.unique(cell_types)}


def noise_floor_pair(
    real: Any,
    control_label: str,
    pert_col: str = "target_gene",
    celltype_col: str = "cell_type",
    seed: int = 0,
) -> tuple[Any, Any]:
    """(pred, real) halves: each condition's real cells split at random into n//2 and n//2 cells.

    Conditions with fewer than 2 cells are dropped. Both halves keep the full control pool so that
    deltas and DE use the same controls as the methods.
    """
    rng = np.random.default_rng(seed)
    x = _dense(real.X)
    groups = _rows_by_condition(real, pert_col, celltype_col)
    halves: tuple[list[NDArray[np.intp]], list[NDArray[np.intp]]] = ([], [])
    for (_, perturbation), rows in sorted(groups.items()):
        if perturbation == control_label:
            halves[0].append(rows)
            halves[1].append(rows)
            continue
        if rows.size < 2:
            continue
        order = rng.permutation(rows)
        half = rows.size // 2
        halves[0].append(order[:half])
        halves[1].append(order[half : 2 * half])
    out = []
    for arm, parts in zip(("noise_floor", "noise_floor_real"), halves, strict=True):
        chosen = np.concatenate(parts)
        obs = real.obs.iloc[chosen][[c for c in (pert_col, celltype_col, "batch") if c in real.obs.columns]]
        out.append(_build(real, [x[chosen]], [obs.reset_index(drop=True)], arm, control_label))
    return out[0], out[1]


def evaluate_references(
    real: Any,
    control_label: str,
    shifts: Mapping[str, NDArray[np.floating]] | None = None,
    pca: Any = None,
    pert_col: str = "target_gene",
    celltype_col: str = "cell_type",
    seed: int = 0,
    progress: bool = False,
) -> dict[str, Any]:
    """Score every reference against ``real`` with one shared PCA; returns name → EvaluationResult.

    ``train_mean`` is scored only when ``shifts`` is given.
    """
    from ptrag.evaluation.core import evaluate, fit_pca_on_real

    shared_pca = pca if pca is not None else fit_pca_on_real(real, seed=seed)
    options = {
        "control_label": control_label,
        "pert_col": pert_col,
        "celltype_col": celltype_col,
        "pca": shared_pca,
        "progress": progress,
    }
    out = {
        "control": evaluate(
            control_reference(real, control_label, pert_col, celltype_col, seed), real, **options
        )
    }
    if shifts is not None:
        pred = train_mean_reference(real, shifts, control_label, pert_col, celltype_col, seed)
        out["train_mean"] = evaluate(pred, real, **options)
    half_pred, half_real = noise_floor_pair(real, control_label, pert_col, celltype_col, seed)
    out["noise_floor"] = evaluate(half_pred, half_real, **options)
    return out
