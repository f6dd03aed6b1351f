"""A predicted and a real AnnData indexed by condition once (cf. cell-eval's PerturbationAnndataPair).

Every metric and reference finds a condition's cells here: ``rows_by_condition`` is the one
grouping of cells by (cell type, perturbation) in evaluation, and ``dense`` the one dense float32
view of an AnnData matrix.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from ptrag.errors import DataError, format_list

__all__ = ["ALL_CELL_TYPES", "ConditionPair", "cell_types_of", "dense", "rows_by_condition"]

# The one cell type of data without a cell-type column.
ALL_CELL_TYPES = "all"

Condition = tuple[str, str]  # (cell type, perturbation)


def dense(x: Any) -> NDArray[np.float32]:
    """A dense float32 copy of an AnnData matrix (sparse or not); float32 storage halves memory,
    and every block is promoted to float64 where it is reduced."""
    return np.asarray(x.toarray() if hasattr(x, "toarray") else x, dtype=np.float32)


def cell_types_of(adata: Any, celltype_col: str | None) -> NDArray[Any]:
    """Each cell's cell type, as strings (:data:`ALL_CELL_TYPES` without a cell-type column)."""
    if celltype_col is None:
        return np.full(adata.n_obs, ALL_CELL_TYPES, dtype=object)
    return adata.obs[celltype_col].astype(str).to_numpy()


def rows_by_condition(
    adata: Any, pert_col: str, celltype_col: str | None
) -> dict[Condition, NDArray[np.intp]]:
    """(cell type, perturbation) → the positions of its cells in ``adata``, ascending."""
    labels = pd.MultiIndex.from_arrays(
        [cell_types_of(adata, celltype_col), adata.obs[pert_col].astype(str).to_numpy()]
    )
    codes, uniques = pd.factorize(labels, sort=True)
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(len(uniques) + 1))
    return {(str(c), str(p)): order[bounds[i] : bounds[i + 1]] for i, (c, p) in enumerate(uniques)}


@dataclass(frozen=True, eq=False)
class ConditionPair:
    """Predicted and real cells of the same conditions, each grouped once."""

    adata_pred: Any
    adata_real: Any
    pert_col: str
    celltype_col: str | None
    control_label: str

    @cached_property
    def pred_rows(self) -> dict[Condition, NDArray[np.intp]]:
        return rows_by_condition(self.adata_pred, self.pert_col, self.celltype_col)

    @cached_property
    def real_rows(self) -> dict[Condition, NDArray[np.intp]]:
        return rows_by_condition(self.adata_real, self.pert_col, self.celltype_col)

    @cached_property
    def pred_x(self) -> NDArray[np.float32]:
        return dense(self.adata_pred.X)

    @cached_property
    def real_x(self) -> NDArray[np.float32]:
        return dense(self.adata_real.X)

    def cell_types(self) -> list[str]:
        return sorted({c for c, _ in self.real_rows})

    def perturbations(self, cell_type: str) -> list[str]:
        """The cell type's perturbed conditions in the real cells, sorted (the control left out)."""
        return sorted(p for c, p in self.real_rows if c == cell_type and p != self.control_label)

    def check_same_conditions(self) -> None:
        """Raise DataError naming the conditions only one side holds."""
        pred, real = set(self.pred_rows), set(self.real_rows)
        if pred != real:
            only_real, only_pred = format_list(sorted(real - pred)), format_list(sorted(pred - real))
            raise DataError(
                "adata_pred and adata_real hold different (cell type, perturbation) conditions: "
                f"only in real: {only_real}; only in pred: {only_pred}."
            )
