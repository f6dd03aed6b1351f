"""The in-memory form of a perturbation screen that every later stage consumes."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Protocol

import numpy as np
import pandas as pd

from ptrag.data.normalisation import Normalisation

__all__ = [
    "BATCH",
    "CELL_TYPE",
    "CONTROL_MEAN_CHUNK",
    "MIN_BATCH_CONTROLS",
    "PERTURBATION",
    "ColumnMapping",
    "ExpressionMatrix",
    "PerturbationDataset",
]

if TYPE_CHECKING:
    from ptrag.data.conditions import Conditions
    from ptrag.data.strata import Strata

# Standardised obs columns of every PerturbationDataset, whatever the source file called them.
PERTURBATION = "perturbation"
CELL_TYPE = "cell_type"
BATCH = "batch"
# Control cells read at a time when averaging a cell type's pool (bounds memory on big screens).
CONTROL_MEAN_CHUNK = 8192
# A batch with fewer control cells of a cell type than this anchors on the cell type's whole pool:
# the mean of a handful of cells is noisier than the batch offset it would estimate.
MIN_BATCH_CONTROLS = 32


class ExpressionMatrix(Protocol):
    """Cells × genes log1p expression that can be gathered by row without densifying everything."""

    @property
    def shape(self) -> tuple[int, int]: ...

    @property
    def nbytes(self) -> int: ...

    def rows(self, index: np.ndarray) -> np.ndarray:
        """Return the rows at ``index`` as a dense float32 array of shape (len(index), n_genes)."""
        ...


@dataclass(frozen=True)
class ColumnMapping:
    """Which source columns and control label were used (detected or given by the user)."""

    perturbation: str
    cell_type: str
    batch: str | None
    control_label: str


@dataclass
class PerturbationDataset:
    """A validated screen.

    ``obs`` is indexed by cell name and has categorical columns ``perturbation``, ``cell_type`` and
    ``batch`` (a single category ``"0"`` when the source has no batch column). ``genes`` is the
    ordered gene list that travels with every model and output.
    """

    expression: ExpressionMatrix
    genes: tuple[str, ...]
    obs: pd.DataFrame
    columns: ColumnMapping
    source: str = ""
    warnings: list[str] = field(default_factory=list)
    # Where the expression came from and how it is stored, for `ptrag inspect` and logs.
    expression_source: str = ""
    # How the values became log1p expression; a run stores it (with ``genes``) to read new data alike.
    normalisation: Normalisation = field(default_factory=Normalisation)

    @property
    def n_cells(self) -> int:
        return int(self.obs.shape[0])

    @property
    def n_genes(self) -> int:
        return len(self.genes)

    @property
    def control_label(self) -> str:
        return self.columns.control_label

    @property
    def is_control(self) -> np.ndarray:
        return self.conditions.is_control

    @cached_property
    def conditions(self) -> Conditions:
        """The (cell type, perturbation) conditions and their cells, computed once per dataset."""
        from ptrag.data.conditions import Conditions

        return Conditions.of(self.obs, self.control_label)

    @cached_property
    def fitted_strata(self) -> dict[str, Strata]:
        """Cell type → its control cells' basal-state strata, filled by
        :func:`ptrag.data.strata.control_strata` (each fitted once per dataset, not once per use)."""
        return {}

    @cached_property
    def batch_codes(self) -> np.ndarray:
        """int64 batch code of every cell (computed once: collate reads it for every training step)."""
        return self.obs[BATCH].cat.codes.to_numpy().astype(np.int64)

    @cached_property
    def control_means(self) -> dict[str, np.ndarray]:
        """Mean expression (float32) of each cell type's whole control pool, read in chunks.

        Predictions are anchored to it: the 32-64 controls of one set have a noisy mean, the pool
        does not.
        """
        means: dict[str, np.ndarray] = {}
        for cell_type in self.cell_types:
            cells = self.conditions.controls(cell_type)
            if cells.size:
                means[cell_type] = self._rows_mean(cells)
        return means

    def _rows_mean(self, rows: np.ndarray) -> np.ndarray:
        """float32 mean expression of ``rows`` (at least one), summed in float64 in chunks of
        :data:`CONTROL_MEAN_CHUNK` rows."""
        total = np.zeros(self.n_genes, dtype=np.float64)
        for start in range(0, rows.size, CONTROL_MEAN_CHUNK):
            block = rows[start : start + CONTROL_MEAN_CHUNK]
            total += self.expression.rows(block).sum(axis=0, dtype=np.float64)
        return (total / rows.size).astype(np.float32)

    @cached_property
    def batch_control_means(self) -> dict[str, np.ndarray]:
        """Cell type → (n batches, n_genes) float32: row b is the mean of the cell type's control
        cells in batch b, or its whole pool's mean (:attr:`control_means`) when batch b has fewer
        than :data:`MIN_BATCH_CONTROLS` of them.

        ``model.anchor = "batch_pool"`` re-centres a set of control cells on the mean of these rows
        over its cells' batches, so that a group keeps the batch offset of the batches its cells
        came from.
        """
        n_batches = len(self.obs[BATCH].cat.categories)
        codes = self.batch_codes
        means: dict[str, np.ndarray] = {}
        for cell_type, pool_mean in self.control_means.items():
            cells = self.conditions.controls(cell_type)
            table = np.repeat(pool_mean[None, :], n_batches, axis=0)
            for batch in range(n_batches):
                members = cells[codes[cells] == batch]
                if members.size >= MIN_BATCH_CONTROLS:
                    table[batch] = self._rows_mean(members)
            means[cell_type] = table
        return means

    @property
    def cell_types(self) -> list[str]:
        return [str(c) for c in self.obs[CELL_TYPE].cat.categories]

    def perturbations(self, cell_type: str | None = None) -> list[str]:
        """Non-control perturbations with cells (in ``cell_type`` if given), sorted."""
        return self.conditions.perturbations_in(cell_type)
