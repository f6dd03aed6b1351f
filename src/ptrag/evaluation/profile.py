"""cell-eval's mean-profile metrics, vectorised over the perturbations of one cell type.

Definitions follow cell-eval (``cell_eval.metrics._anndata``), computed within each cell type:

- ``mse`` / ``mae``: between the predicted and real mean profiles (pseudobulk means over cells).
- ``pearson_delta``: on the deltas from control, where the predicted delta uses the mean of the
  *predicted file's* control cells and the real delta the mean of the *real file's* control cells
  (cell-eval's ``ctrl_pred`` / ``ctrl_real``). Under ptrag's prediction contract both files hold
  the same control cells, so both deltas use the same control mean: that cell type's control cells.
- cell-eval's ``mse_delta`` / ``mae_delta`` are not computed: with the same control cells in both
  files they equal ``mse`` / ``mae`` exactly (the control means cancel in the difference).
- ``discrimination_score_l1``: 1 − rank/P, where rank is the position of the true perturbation
  among all P real deltas of the cell type, ordered by L1 distance to the predicted delta; the
  target gene's own column is excluded when it is measured. Exact ties count in the model's favour
  (cell-eval's unstable argsort leaves their order unspecified).
- ``overlap_at_N``: see :mod:`ptrag.evaluation.de`.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy.spatial.distance import cdist

__all__ = ["FloatArray", "discrimination_score_l1", "profile_metrics"]

FloatArray = NDArray[np.float64]

def rowwise_pearson(a: FloatArray, b: FloatArray) -> FloatArray:
    """Pearson correlation of matching rows; NaN where a row is constant (as scipy returns)."""
    a_centred = a - a.mean(axis=1, keepdims=True)
    b_centred = b - b.mean(axis=1, keepdims=True)
    denominator = np.sqrt((a_centred**2).sum(axis=1) * (b_centred**2).sum(axis=1))
    with np.errstate(divide="ignore", invalid="ignore"):
        r = (a_centred * b_centred).sum(axis=1) / denominator
    r[denominator == 0] = np.nan
    return np.clip(r, -1.0, 1.0)


def discrimination_score_l1(
    pred_delta: FloatArray,
    real_delta: FloatArray,
    perturbations: list[str],
    genes: list[str] | tuple[str, ...],
) -> FloatArray:
    """cell-eval ``discrimination_score_l1`` for each perturbation (rows of the delta matrices)."""
    n_perts = len(perturbations)
    distances = cdist(pred_delta, real_delta, metric="cityblock")
    gene_index = {gene: i for i, gene in enumerate(genes)}
    for row, perturbation in enumerate(perturbations):
        column = gene_index.get(perturbation)
        if column is not None:
            # Remove the target gene's contribution: its knockdown is trivially predictable.
            distances[row] -= np.abs(real_delta[:, column] - pred_delta[row, column])
    own = distances[np.arange(n_perts), np.arange(n_perts)]
    rank = (distances < own[:, None]).sum(axis=1)
    return 1.0 - rank / n_perts


def profile_metrics(
    pred_means: FloatArray,
    real_means: FloatArray,
    pred_control_mean: FloatArray,
    real_control_mean: FloatArray,
    perturbations: list[str],
    genes: list[str] | tuple[str, ...],
) -> dict[str, FloatArray]:
    """All mean-profile metrics for the P perturbations of one cell type (rows of the mean matrices)."""
    pred_delta = pred_means - pred_control_mean[None, :]
    real_delta = real_means - real_control_mean[None, :]
    error = pred_means - real_means
    return {
        "pearson_delta": rowwise_pearson(pred_delta, real_delta),
        "mse": (error**2).mean(axis=1),
        "mae": np.abs(error).mean(axis=1),
        "discrimination_score_l1": discrimination_score_l1(pred_delta, real_delta, perturbations, genes),
    }
