"""State gains: how strongly each gene's response differs between basal-state strata (issue 21).

Cells of one type are not one state, and on a screen where response strength, escape or whole
programs depend on the cell's basal state, a mean shift put on every cell alike is a blend that no
cell shows. The run learns, per cell type and from the training groups only, how a gene's response
in each basal-state stratum (``ptrag.data.strata``: k-means of the cell type's control cells, k and
seed fixed) relates to the group's mean response:

    d_{j,k,g} = mean(perturbed cells of j in stratum k)_g − mean(control cells in stratum k)_g
    gain_{k,g} = Σ_j d_{j,k,g} μ_{j,g} / Σ_j μ_{j,g}²,   μ_j the group's pooled mean shift

shrunk gene by gene toward the stratum's gain over all genes (one number per stratum, pooled over
genes and groups) with a weight of one median denominator, so that a gene few training groups move
inherits its stratum's gain. Prediction moves each cell's response by ``(gain_{k(cell)} − mean
gain of the set) · μ̂``, μ̂ the set's predicted mean response (``ptrag.prediction.state_gain``): the
predicted mean, and so every pseudobulk metric, is unchanged; only how the response is spread over
the cells' states moves. Measured on validation groups only (docs/generation.md).

Only training groups are read, so a held-out measurement never informs its own prediction; a
perturbation's own target column is left out (the knockdown prior owns it).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from ptrag.data.dataset import PerturbationDataset
from ptrag.data.strata import (
    assign_strata,
    control_strata,
    left_alone_genes,
    nearest_centroid,
)

__all__ = ["StateGains", "gains_from_sums"]

log = logging.getLogger(__name__)

# A stratum of a group with fewer perturbed cells than this gives a mean that is mostly noise.
MIN_CELLS_PER_STRATUM = 3
MIN_CELLS_PER_GROUP = 10
# A cell type with fewer training groups than this learns no gains (its cells are left as predicted).
MIN_GROUPS_PER_CELL_TYPE = 10
# Weight of the stratum-wide gain in each gene's estimate, in units of the median gene's Σ μ².
SHRINKAGE = 1.0


@dataclass(frozen=True)
class CellTypeGains:
    """One cell type's strata (what assigning a new control cell needs) and gains (k, n_genes)."""

    centroids: NDArray[np.float32]
    components: NDArray[np.float32]
    control_mean: NDArray[np.float32]
    gains: NDArray[np.float32]
    stratum_gains: NDArray[np.float32]  # (k,): pooled over genes, what each gene shrinks toward
    n_groups: int

    def strata_of(self, controls: NDArray[np.floating]) -> NDArray[np.intp]:
        """The stratum of each control cell (n, n_genes), measured on every gene."""
        return nearest_centroid(self.centroids, self.components, self.control_mean, controls)

    def to_state(self) -> dict[str, Any]:
        fields = ("centroids", "components", "control_mean", "gains", "stratum_gains")
        state: dict[str, Any] = {name: torch.from_numpy(np.asarray(getattr(self, name))) for name in fields}
        state["n_groups"] = int(self.n_groups)
        return state

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> CellTypeGains:
        def array(name: str) -> NDArray[np.float32]:
            return state[name].numpy().astype(np.float32)

        return cls(
            array("centroids"),
            array("components"),
            array("control_mean"),
            array("gains"),
            array("stratum_gains"),
            int(state["n_groups"]),
        )


@dataclass(frozen=True)
class StateGains:
    """Per cell type with enough training groups: its strata and per-gene, per-stratum gains."""

    by_cell_type: Mapping[str, CellTypeGains]

    def get(self, cell_type: str) -> CellTypeGains | None:
        return self.by_cell_type.get(cell_type)

    @classmethod
    def from_training_groups(
        cls, dataset: PerturbationDataset, groups: Sequence[tuple[str, str]]
    ) -> StateGains:
        by_type: dict[str, list[str]] = {}
        for cell_type, perturbation in groups:
            by_type.setdefault(cell_type, []).append(perturbation)
        fitted = {}
        for cell_type, perturbations in sorted(by_type.items()):
            if len(perturbations) >= MIN_GROUPS_PER_CELL_TYPE:
                gains = _cell_type_gains(dataset, cell_type, perturbations)
                if gains is not None:
                    fitted[cell_type] = gains
        return cls(fitted)

    def describe(self) -> str:
        """One line for the training log: the spread of each cell type's stratum gains."""
        if not self.by_cell_type:
            return (
                f"state gains: no cell type has {MIN_GROUPS_PER_CELL_TYPE} training groups; cells "
                "keep their predicted responses"
            )
        parts = [
            f"{cell_type} {', '.join(f'{g:.2f}' for g in gains.stratum_gains)} ({gains.n_groups} groups)"
            for cell_type, gains in self.by_cell_type.items()
        ]
        return "state gains per basal-state stratum: " + "; ".join(parts)

    def to_state(self) -> dict[str, Any]:
        return {cell_type: gains.to_state() for cell_type, gains in self.by_cell_type.items()}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> StateGains:
        return cls({str(cell_type): CellTypeGains.from_state(s) for cell_type, s in state.items()})


def gains_from_sums(
    numerator: NDArray[np.float64], denominator: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Per-gene gains (k, n_genes) and each stratum's pooled gain (k,) from the sums Σ d·μ and Σ μ².

    A gene shrinks toward its stratum's gain with a weight of the stratum's median denominator; a
    stratum no training group reached (no denominator at all) gets gain 1, so its cells keep the
    set's response rather than losing it.
    """
    totals = denominator.sum(axis=1)
    pooled = np.where(totals > 0, numerator.sum(axis=1) / np.where(totals > 0, totals, 1.0), 1.0)
    weight = SHRINKAGE * np.median(denominator, axis=1, keepdims=True)
    total = denominator + weight
    shrunk = (numerator + weight * pooled[:, None]) / np.where(total > 0, total, 1.0)
    return np.where(total > 0, shrunk, pooled[:, None]), pooled


def _cell_type_gains(
    dataset: PerturbationDataset, cell_type: str, perturbations: Sequence[str]
) -> CellTypeGains | None:
    if dataset.conditions.controls(cell_type).size < 2:
        return None
    # The same strata as the stratified loss; a stratum's control mean is its centroid.
    strata = control_strata(dataset, cell_type)
    stratum_means = strata.centroids
    k, n_genes = stratum_means.shape
    column = {gene: j for j, gene in enumerate(dataset.genes)}
    numerator = np.zeros((k, n_genes))
    denominator = np.zeros((k, n_genes))
    n_groups = 0
    for perturbation in perturbations:
        cells = dataset.conditions.cells((cell_type, perturbation))
        if cells is None or cells.size < MIN_CELLS_PER_GROUP:
            continue
        values = dataset.expression.rows(cells).astype(np.float64)
        shift = values.mean(axis=0) - strata.control_mean
        if perturbation in column:
            shift[column[perturbation]] = 0.0
        labels = assign_strata(strata, values, left_alone_genes(strata, values))
        for stratum in range(k):
            members = labels == stratum
            if members.sum() >= MIN_CELLS_PER_STRATUM:
                stratum_shift = values[members].mean(axis=0) - stratum_means[stratum]
                numerator[stratum] += stratum_shift * shift
                denominator[stratum] += shift * shift
        n_groups += 1
    if n_groups < MIN_GROUPS_PER_CELL_TYPE:
        return None
    gains, pooled = gains_from_sums(numerator, denominator)
    return CellTypeGains(
        strata.centroids.astype(np.float32),
        strata.components.astype(np.float32),
        strata.control_mean.astype(np.float32),
        gains.astype(np.float32),
        pooled.astype(np.float32),
        n_groups,
    )
