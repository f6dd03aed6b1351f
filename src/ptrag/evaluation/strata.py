"""A metric that sees cell state: energy and W1 scored within basal-state strata of the controls.

A mean shift moves every cell alike; where cells of one population respond differently according to
their basal state, the pooled metrics barely notice a prediction that gets the state-dependence
wrong. Here the comparison is made within strata of basal state (DESIGN §8):

1. **Strata** (:func:`ptrag.data.strata.fit_strata`, once per cell type): the cell type's *control* cells are
   projected on their own leading principal components (:data:`N_STRATA_PCS`) and clustered by
   k-means into :data:`N_STRATA` strata (sklearn, ``n_init=10``, seed :data:`STRATA_SEED`). k and
   the seed are fixed, not tuned per data set or run, so every method, reference and seed of a
   benchmark is scored on the same strata.
2. **Genes the perturbation leaves alone** (:func:`left_alone_genes`, per condition, from the *real*
   cells only, so the same for every method): gene g is left alone when its real mean shift is within
   :data:`Z_LEFT_ALONE` standard errors of zero, ``|mean_real − mean_ctrl| < 3 · sqrt(v (1/n + 1/n_ctrl))``
   with v the controls' variance of g. A z-threshold rather than a fixed top-N adapts to the
   perturbation: a null perturbation keeps nearly every gene, a strong one loses every gene it
   measurably moves, and noisy genes are not excluded for their noise. If fewer than half the genes
   pass, the half with the smallest |z| is used, so that assignment never rests on a handful of genes.
3. **Assignment** (:func:`assign_strata`): every predicted and real cell goes to the nearest stratum
   centroid (the mean of its control cells), the distance measured on the left-alone genes only, in
   the controls' principal components: ``‖V_m (x − c_k)_m‖`` with ``m`` the left-alone genes and
   ``V`` the components (the excluded genes contribute nothing). The components denoise the
   assignment; restricting to left-alone genes keeps a cell's response from moving it to another
   stratum.
4. **Scores** (:func:`strata_metrics`): per stratum, the energy distance in gene space (the
   unbiased U-statistic of ``energy_gene_unbiased``,
   :func:`~ptrag.evaluation.distributional.energy_distances`) and W1
   per PC of the evaluation's shared PCA averaged over PCs (as ``w1``), each weighted by the stratum's
   share of the real cells. Strata with fewer than :data:`MIN_STRATUM_CELLS` real cells are skipped
   and the weights renormalised over the rest. A stratum with enough real cells but fewer than
   :data:`MIN_STRATUM_CELLS` predicted ones is scored against *all* predicted cells of the condition,
   so that a prediction leaving out a state pays for it rather than being excused.

Within a stratum the sets are a quarter of the condition or less, so the V-statistic's bias (its
within-set means count each cell's zero distance to itself, which rewards predictions narrower than
the truth, by about E|X−X'|/n) would be four times ``energy_gene``'s; the U-statistic has none, so a
prediction distributed like the real cells scores about 0 and a state-aware spread is not penalised
for being as wide as the truth. It can be slightly negative. W1 between samples keeps a small
finite-n bias; compare ``w1_strata`` between methods scored on the same cells.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from ptrag.data.strata import MIN_STRATUM_CELLS, Strata, assign_strata, left_alone_genes
from ptrag.evaluation.distributional import (
    PCAProjection,
    RealSide,
    energy_distances,
    wasserstein_1d,
)

__all__ = ["STRATA_METRICS", "RealStrata", "strata_metrics"]

STRATA_METRICS: tuple[str, ...] = ("energy_strata", "w1_strata")


@dataclass(frozen=True)
class RealStrata:
    """One condition's real cells in the strata: what every prediction scored against them shares."""

    genes: NDArray[np.bool_]  # the genes the perturbation leaves alone
    strata: dict[int, tuple[NDArray[np.float64], RealSide]]  # scored stratum → its real cells

    @classmethod
    def of(cls, real: NDArray[np.floating], strata: Strata, pca: PCAProjection) -> RealStrata:
        real64 = np.asarray(real, dtype=np.float64)
        genes = left_alone_genes(strata, real64)
        labels = assign_strata(strata, real64, genes)
        scored = {}
        for stratum in range(strata.k):
            real_s = real64[labels == stratum]
            if len(real_s) >= MIN_STRATUM_CELLS:
                scored[stratum] = (real_s, RealSide.of(real_s, pca))
        return cls(genes, scored)


def strata_metrics(
    pred: NDArray[np.floating],
    real: NDArray[np.floating],
    strata: Strata,
    pca: PCAProjection,
    real_strata: RealStrata | None = None,
) -> dict[str, float]:
    """``energy_strata`` and ``w1_strata`` of one condition (see the module docstring).

    ``real_strata``: ``RealStrata.of(real, strata, pca)`` when already computed (same values).
    """
    pred64 = np.asarray(pred, dtype=np.float64)
    real64 = np.asarray(real, dtype=np.float64)
    if len(pred64) == 0 or len(real64) < MIN_STRATUM_CELLS:
        return {name: float("nan") for name in STRATA_METRICS}
    if real_strata is None:
        real_strata = RealStrata.of(real64, strata, pca)
    pred_labels = assign_strata(strata, pred64, real_strata.genes)
    weights, energies, w1s = [], [], []
    for stratum, (real_s, side) in real_strata.strata.items():
        pred_s = pred64[pred_labels == stratum]
        if len(pred_s) < MIN_STRATUM_CELLS:
            pred_s = pred64
        weights.append(len(real_s))
        energies.append(energy_distances(pred_s, real_s, side.sum_within)[1])
        w1s.append(float(wasserstein_1d(pca.transform(pred_s), side.pcs)[0].mean()))
    if not weights:  # every stratum too small: nothing state-resolved to score
        return {name: float("nan") for name in STRATA_METRICS}
    w = np.asarray(weights, dtype=np.float64) / float(np.sum(weights))
    return {"energy_strata": float(w @ np.asarray(energies)), "w1_strata": float(w @ np.asarray(w1s))}
