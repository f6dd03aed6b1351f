"""n-matched, seeded draws of real control cells: what every reference (and every diagnostic row
built on the references' control cells) is made of. See :mod:`ptrag.evaluation.references`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from ptrag.config.schema import AnchorMode
from ptrag.data.dataset import MIN_BATCH_CONTROLS
from ptrag.data.sets import draw_controls
from ptrag.errors import DataError
from ptrag.evaluation.pair import dense, rows_by_condition
from ptrag.keys import BATCH_COL, CONTROL_BARCODE_COL, PERT_COL, UNS_KEY

__all__ = ["BuildContext", "ShiftLookup", "pred_like", "shifted_controls"]

if TYPE_CHECKING:
    from ptrag.evaluation.reference_shifts import ReferenceShifts

ShiftLookup = Callable[[str, str], NDArray[np.floating]]  # (cell type, perturbation) → shift


@dataclass(frozen=True)
class BuildContext:
    control_label: str
    pert_col: str = PERT_COL
    celltype_col: str = "cell_type"
    seed: int = 0
    shifts: ReferenceShifts | None = None
    # What each draw of control cells is re-centred on, as the models' ``model.anchor``:
    # "batch_pool": the mean, over the condition's real cells, of their batch's control mean
    # (the real file's obs[batch_col]; without it, the pool's); "control_pool": the cell type's
    # control-pool mean; "none": the draw as it is.
    anchor: AnchorMode = "batch_pool"
    batch_col: str = BATCH_COL


def pred_like(
    real: Any,
    blocks: list[NDArray[np.float32]],
    obs_rows: list[pd.DataFrame],
    arm: str,
    control_label: str,
) -> Any:
    """A prediction-like AnnData of ``blocks`` of cells (with ``obs_rows``) over ``real``'s genes."""
    import anndata as ad

    obs = pd.concat(obs_rows, ignore_index=True)
    obs.index = [f"{arm}-{i}" for i in range(len(obs))]
    out = ad.AnnData(X=np.concatenate(blocks).astype(np.float32), obs=obs, var=real.var.copy())
    out.uns[UNS_KEY] = {"control_label": control_label, "split": "test", "arm": arm}
    return out


def shifted_controls(real: Any, context: BuildContext, shift_for: ShiftLookup | None, arm: str) -> Any:
    """Per condition, n control cells of its cell type (seeded draws, re-centred on the anchor
    ``context.anchor`` names) plus ``shift_for(c, p)``.

    The draws do not depend on the shift, so every shift reference uses the same control cells as
    the ``control`` reference for the same seed.
    """
    label, pert_col, celltype_col = context.control_label, context.pert_col, context.celltype_col
    rng = np.random.default_rng(context.seed)
    x = dense(real.X)
    groups = rows_by_condition(real, pert_col, celltype_col)
    batches = _batch_codes(real, context.batch_col) if context.anchor == "batch_pool" else None
    # Per cell type, its pool's mean and its batches' control means: the same for every condition.
    means: dict[str, tuple[NDArray[np.float64], dict[int, NDArray[np.float64]]]] = {}
    blocks: list[NDArray[np.float32]] = []
    obs_rows: list[pd.DataFrame] = []
    for (cell_type, perturbation), rows in sorted(groups.items()):
        pool = groups.get((cell_type, label))
        if pool is None or pool.size == 0:
            raise DataError(f"Cell type {cell_type!r} has no {label!r} cells to build the {arm} reference.")
        chosen = pool if perturbation == label else draw_controls(pool, rows.size, rng)
        cells = x[chosen].copy()
        if context.anchor != "none" and perturbation != label:
            if cell_type not in means:
                pool_mean = x[pool].mean(axis=0, dtype=np.float64)
                by_batch = {} if batches is None else _batch_means(x, pool, batches)
                means[cell_type] = (pool_mean, by_batch)
            pool_mean, by_batch = means[cell_type]
            anchor = pool_mean if batches is None else _batch_anchor(rows, batches, pool_mean, by_batch)
            cells += anchor.astype(np.float32) - cells.mean(axis=0)
        if shift_for is not None and perturbation != label:
            cells += np.asarray(shift_for(cell_type, perturbation), dtype=np.float32)[None, :]
        blocks.append(cells)
        obs = pd.DataFrame({pert_col: perturbation, celltype_col: cell_type}, index=range(len(chosen)))
        obs[CONTROL_BARCODE_COL] = np.asarray(real.obs_names)[chosen]
        if "batch" in real.obs.columns:
            obs["batch"] = real.obs["batch"].to_numpy()[chosen]
        obs_rows.append(obs)
    return pred_like(real, blocks, obs_rows, arm, label)


def _batch_codes(real: Any, batch_col: str) -> NDArray[np.int64] | None:
    """Each real cell's batch code, or None when the real file has no obs[batch_col]."""
    if batch_col not in real.obs.columns:
        return None
    codes, _ = pd.factorize(real.obs[batch_col].astype(str), sort=True)
    return codes.astype(np.int64)


def _batch_means(
    x: NDArray[np.floating], pool: NDArray[np.intp], batches: NDArray[np.int64]
) -> dict[int, NDArray[np.float64]]:
    """Batch → the mean of its control cells in ``pool``, for batches with at least
    MIN_BATCH_CONTROLS of them (the rule of ``PerturbationDataset.batch_control_means``, which the
    models anchor on); the others use the pool's mean."""
    found, counts = np.unique(batches[pool], return_counts=True)
    return {
        batch: x[pool[batches[pool] == batch]].mean(axis=0, dtype=np.float64)
        for batch, count in zip(found.tolist(), counts.tolist(), strict=True)
        if count >= MIN_BATCH_CONTROLS
    }


def _batch_anchor(
    rows: NDArray[np.intp],
    batches: NDArray[np.int64],
    pool_mean: NDArray[np.float64],
    by_batch: dict[int, NDArray[np.float64]],
) -> NDArray[np.float64]:
    """The mean, over the condition's real cells (``rows``), of their batch's control mean."""
    anchor = np.zeros_like(pool_mean)
    targets, counts = np.unique(batches[rows], return_counts=True)
    for batch, count in zip(targets.tolist(), counts.tolist(), strict=True):
        anchor += count * by_batch.get(batch, pool_mean)
    return anchor / rows.size
