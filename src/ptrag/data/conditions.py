"""The (cell type, perturbation) conditions of a screen and their cells, computed once.

Every later stage asks this index instead of grouping obs itself: split roles and groups, the set
sampler, the response memory, the loader's size warnings and the run's condition groups
(``ptrag.run.groups``) all see the same conditions in the same order.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd

from ptrag.data.dataset import CELL_TYPE, PERTURBATION

__all__ = ["Conditions", "Group", "split_by_key"]

Group = tuple[str, str]  # (cell type, perturbation)


def split_by_key(keys: np.ndarray, members: np.ndarray) -> dict[int, np.ndarray]:
    """Map each distinct key to the (ascending) members carrying it."""
    order = np.argsort(keys[members], kind="stable")
    sorted_members = members[order]
    sorted_keys = keys[sorted_members]
    boundaries = np.flatnonzero(np.diff(sorted_keys)) + 1
    starts = np.concatenate([[0], boundaries])
    return {
        int(sorted_keys[s]): chunk
        for s, chunk in zip(starts, np.split(sorted_members, boundaries), strict=True)
        if chunk.size
    }


@dataclass(frozen=True, eq=False)
class Conditions:
    """Condition code of every cell: cell type code × number of perturbations + perturbation code."""

    cell_types: tuple[str, ...]  # the obs categories, sorted
    perturbations: tuple[str, ...]  # the obs categories, control label included
    control_label: str
    type_code: np.ndarray  # (n_cells,) int64
    pert_code: np.ndarray  # (n_cells,) int64

    @classmethod
    def of(cls, obs: pd.DataFrame, control_label: str) -> Conditions:
        """From standardised obs (categorical ``cell_type`` and ``perturbation`` columns)."""
        return cls(
            tuple(str(c) for c in obs[CELL_TYPE].cat.categories),
            tuple(str(p) for p in obs[PERTURBATION].cat.categories),
            control_label,
            obs[CELL_TYPE].cat.codes.to_numpy().astype(np.int64),
            obs[PERTURBATION].cat.codes.to_numpy().astype(np.int64),
        )

    @property
    def _width(self) -> int:
        return max(1, len(self.perturbations))

    @cached_property
    def code(self) -> np.ndarray:
        return self.type_code * self._width + self.pert_code

    @cached_property
    def is_control(self) -> np.ndarray:
        if self.control_label not in self.perturbations:
            return np.zeros(self.pert_code.shape, dtype=bool)
        return self.pert_code == self.perturbations.index(self.control_label)

    def name(self, code: int) -> Group:
        return self.cell_types[code // self._width], self.perturbations[code % self._width]

    def code_of(self, group: Group) -> int | None:
        cell_type, perturbation = group
        if cell_type not in self.cell_types or perturbation not in self.perturbations:
            return None
        return self.cell_types.index(cell_type) * self._width + self.perturbations.index(perturbation)

    @cached_property
    def _cells(self) -> dict[int, np.ndarray]:
        return split_by_key(self.code, np.arange(self.code.size, dtype=np.int64))

    @cached_property
    def groups(self) -> list[Group]:
        """Every (cell type, perturbation) with perturbed cells, sorted by cell type then perturbation."""
        named = (self.name(code) for code in sorted(self._cells))
        return [group for group in named if group[1] != self.control_label]

    def cells(self, group: Group) -> np.ndarray:
        """The cells of one condition (ascending); empty when it has none."""
        code = self.code_of(group)
        found = self._cells.get(code) if code is not None else None
        return found if found is not None else np.zeros(0, dtype=np.int64)

    def sizes(self) -> dict[Group, int]:
        """Cells per condition, controls included."""
        return {self.name(code): int(cells.size) for code, cells in sorted(self._cells.items())}

    def controls(self, cell_type: str) -> np.ndarray:
        return self.cells((cell_type, self.control_label))

    def perturbations_in(self, cell_type: str | None = None) -> list[str]:
        """Sorted perturbations with cells (in ``cell_type`` if given)."""
        return sorted({p for c, p in self.groups if cell_type is None or c == cell_type})
