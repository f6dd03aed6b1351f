"""Basal-state strata of a cell type's control cells: fitted once, every cell assigned to one.

A population of one cell type is not one state: cell-cycle phase, pathway activity and the like
make some cells respond more than others. The strata are k-means clusters of the cell type's
*control* cells on their leading principal components, k and the seed fixed (not tuned per data set
or run). A perturbed cell is assigned to the nearest stratum centroid measured on the genes its
perturbation leaves alone (:func:`left_alone_genes`), so that its response does not move it to
another stratum. Evaluation scores within strata (``ptrag.evaluation.strata``); training can weigh a
stratified loss (``model.strata_loss_weight``, :func:`cell_strata`).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from ptrag.data.dataset import PerturbationDataset
from ptrag.data.sets import draw_controls

__all__ = [
    "MIN_STRATUM_CELLS",
    "N_STRATA",
    "N_STRATA_PCS",
    "STRATA_SEED",
    "Z_LEFT_ALONE",
    "FloatArray",
    "Strata",
    "assign_strata",
    "cell_strata",
    "control_strata",
    "fit_strata",
    "left_alone_genes",
    "nearest_centroid",
    "strata_controls",
]

FloatArray = NDArray[np.float64]

N_STRATA = 4
N_STRATA_PCS = 20
Z_LEFT_ALONE = 3.0
MIN_LEFT_ALONE_SHARE = 0.5
MIN_STRATUM_CELLS = 2
STRATA_SEED = 0
# Control cells used to fit one cell type's strata (a seeded subsample above it).
MAX_STRATA_CONTROLS = 5000


@dataclass(frozen=True)
class Strata:
    """Basal-state strata of one cell type's control cells."""

    centroids: FloatArray  # (k, n_genes): mean of each stratum's control cells
    components: FloatArray  # (n_pcs, n_genes): the controls' principal axes
    control_mean: FloatArray  # (n_genes,)
    control_var: FloatArray  # (n_genes,), ddof = 1
    n_controls: int
    control_labels: NDArray[np.intp]  # k-means stratum of each control cell

    @property
    def k(self) -> int:
        return int(self.centroids.shape[0])


def fit_strata(
    controls: NDArray[np.floating], k: int = N_STRATA, n_pcs: int = N_STRATA_PCS, seed: int = STRATA_SEED
) -> Strata:
    """k-means strata of control cells (n_cells, n_genes) on their leading principal components.

    k shrinks to ``n_cells // MIN_STRATUM_CELLS`` for tiny control pools (1 stratum: pooled scores).
    """
    from sklearn.cluster import KMeans
    from sklearn.utils.extmath import randomized_svd

    x = np.asarray(controls, dtype=np.float64)
    n = x.shape[0]
    if n < 2:
        raise ValueError("Strata need at least two control cells.")
    mean = x.mean(axis=0)
    centred = x - mean
    n_components = max(1, min(n_pcs, n - 1, x.shape[1]))
    _, _, components = randomized_svd(centred, n_components, random_state=seed)
    k_used = max(1, min(k, n // MIN_STRATUM_CELLS))
    if k_used == 1:
        labels = np.zeros(n, dtype=np.intp)
    else:
        labels = KMeans(n_clusters=k_used, n_init=10, random_state=seed).fit_predict(centred @ components.T)
    centroids = np.stack([x[labels == j].mean(axis=0) for j in range(k_used)])
    return Strata(centroids, components, mean, x.var(axis=0, ddof=1), n, labels.astype(np.intp))


def left_alone_genes(strata: Strata, real_cells: NDArray[np.floating]) -> NDArray[np.bool_]:
    """Genes whose real mean shift from control is within :data:`Z_LEFT_ALONE` standard errors."""
    real = np.asarray(real_cells, dtype=np.float64)
    shift = real.mean(axis=0) - strata.control_mean
    se = np.sqrt(strata.control_var * (1.0 / max(len(real), 1) + 1.0 / strata.n_controls))
    z = np.abs(shift) / np.maximum(se, 1e-12)
    z[(shift == 0.0)] = 0.0  # constant genes (zero variance, no shift) are left alone
    keep = z < Z_LEFT_ALONE
    minimum = int(np.ceil(MIN_LEFT_ALONE_SHARE * len(z)))
    if keep.sum() < minimum:
        keep = np.zeros_like(keep)
        keep[np.argsort(z, kind="stable")[:minimum]] = True
    return keep


def assign_strata(
    strata: Strata, cells: NDArray[np.floating], genes: NDArray[np.bool_] | None = None
) -> NDArray[np.intp]:
    """The nearest stratum of each cell, measured on ``genes`` (default all) in the controls' PCs."""
    return nearest_centroid(strata.centroids, strata.components, strata.control_mean, cells, genes)


def nearest_centroid(
    centroids: NDArray[np.floating],
    components: NDArray[np.floating],
    control_mean: NDArray[np.floating],
    cells: NDArray[np.floating],
    genes: NDArray[np.bool_] | None = None,
) -> NDArray[np.intp]:
    """:func:`assign_strata` from the three arrays it reads (what a checkpoint keeps of strata)."""
    x = np.asarray(cells, dtype=np.float64)
    mask = np.ones(x.shape[1], dtype=bool) if genes is None else np.asarray(genes, dtype=bool)
    axes = components[:, mask].T  # (n_kept_genes, n_pcs)
    cell_scores = (x[:, mask] - control_mean[mask]) @ axes
    centroid_scores = (centroids[:, mask] - control_mean[mask]) @ axes
    d2 = ((cell_scores[:, None, :] - centroid_scores[None, :, :]) ** 2).sum(axis=2)
    return d2.argmin(axis=1).astype(np.intp)


def strata_controls(dataset: PerturbationDataset, cell_type: str) -> NDArray[np.intp]:
    """The control cells a cell type's strata are fitted on: all of them, or a sample of
    :data:`MAX_STRATA_CONTROLS` seeded by the cell type's name (the same whichever cell types are fitted)."""
    controls = dataset.conditions.controls(cell_type)
    if controls.size <= MAX_STRATA_CONTROLS:
        return controls
    rng = np.random.default_rng([STRATA_SEED, zlib.crc32(cell_type.encode("utf-8"))])
    return np.sort(draw_controls(controls, MAX_STRATA_CONTROLS, rng))


def control_strata(dataset: PerturbationDataset, cell_type: str) -> Strata:
    """The cell type's strata, fitted on its :func:`strata_controls` once per dataset: training's
    stratified loss and the state gains use the same ones, and every arm of a benchmark reuses them."""
    cache = dataset.fitted_strata
    if cell_type not in cache:
        cache[cell_type] = fit_strata(dataset.expression.rows(strata_controls(dataset, cell_type)))
    return cache[cell_type]


def cell_strata(dataset: PerturbationDataset, groups: Sequence[tuple[str, str]]) -> NDArray[np.int8]:
    """Stratum of every control cell and of every cell of ``groups`` (-1 for the rest).

    Each cell type's strata are fitted on its control cells; a group's cells are assigned on the
    genes that group leaves alone, computed from its own cells.
    """
    conditions = dataset.conditions
    labels = np.full(dataset.n_cells, -1, dtype=np.int8)
    fitted: dict[str, Strata] = {}
    for cell_type in sorted({c for c, _ in groups}):
        controls = conditions.controls(cell_type)
        if controls.size < 2:
            continue
        fitted[cell_type] = control_strata(dataset, cell_type)
        labels[controls] = assign_strata(fitted[cell_type], dataset.expression.rows(controls))
    for group in groups:
        strata = fitted.get(group[0])
        cells = conditions.cells(group)
        if strata is None or cells is None or cells.size == 0:
            continue
        values = dataset.expression.rows(cells)
        labels[cells] = assign_strata(strata, values, left_alone_genes(strata, values))
    return labels
