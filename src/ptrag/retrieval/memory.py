"""Response memory (beyond the paper, DESIGN.md §3): retrieve observed training responses.

Rows are (perturbation, cell type) pairs of the training split, each carrying its observed mean shift
(perturbed mean minus the control mean of that cell type, log1p space). A query (p, c) retrieves
"p in other cell types" first, then "neighbours of p in c" in order of embedding similarity. Both are
training-split facts, and the query's own row (p, c) can never be retrieved.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import sparse

from ptrag.data.dataset import PerturbationDataset


@dataclass(frozen=True)
class MemoryCandidates:
    rows: np.ndarray  # (Q, K) int64 memory rows
    valid: np.ndarray  # (Q, K) bool
    same_perturbation: np.ndarray  # (Q, K) bool: the row is p measured in another cell type


@dataclass(frozen=True)
class ResponseMemory:
    perturbations: tuple[str, ...]
    cell_types: tuple[str, ...]
    shifts: np.ndarray  # (M, G) float32

    @classmethod
    def from_training_cells(
        cls, dataset: PerturbationDataset, train_mask: np.ndarray, chunk_size: int = 4096
    ) -> ResponseMemory:
        """Mean shifts of every training (perturbation, cell type); ``train_mask`` marks training cells."""
        conditions = dataset.conditions
        use = train_mask | conditions.is_control
        uniq, inverse = np.unique(conditions.code[use], return_inverse=True)
        sums = np.zeros((len(uniq), dataset.n_genes), dtype=np.float64)
        counts = np.bincount(inverse, minlength=len(uniq)).astype(np.float64)
        cells = np.flatnonzero(use)
        for start in range(0, len(cells), chunk_size):
            block = cells[start : start + chunk_size]
            # A sparse group-indicator product sums each group's rows far faster than np.add.at.
            indicator = sparse.csr_matrix(
                (np.ones(len(block)), (inverse[start : start + chunk_size], np.arange(len(block)))),
                shape=(len(uniq), len(block)),
            )
            sums += indicator @ dataset.expression.rows(block).astype(np.float64)
        means = sums / counts[:, None]
        parts = [conditions.name(int(code)) for code in uniq]
        control_mean = {c: means[i] for i, (c, p) in enumerate(parts) if p == dataset.control_label}
        rows = [
            (p, c, means[i] - control_mean[c]) for i, (c, p) in enumerate(parts) if p != dataset.control_label
        ]
        if not rows:
            return cls((), (), np.zeros((0, dataset.n_genes), np.float32))
        perts, ctypes, shifts = zip(*rows, strict=True)
        return cls(tuple(perts), tuple(ctypes), np.stack(shifts).astype(np.float32))

    def __len__(self) -> int:
        return len(self.perturbations)

    def candidates(
        self,
        query_perturbations: Sequence[str],
        query_cell_types: Sequence[str],
        ranked_neighbours: Sequence[Sequence[str]],
        k: int,
    ) -> MemoryCandidates:
        """For each query (p, c): rows of p in other cell types, then rows of p's neighbours in c."""
        by_pert: dict[str, list[int]] = {}
        by_key: dict[tuple[str, str], int] = {}
        for row, (p, c) in enumerate(zip(self.perturbations, self.cell_types, strict=True)):
            by_pert.setdefault(p, []).append(row)
            by_key[(p, c)] = row
        q = len(query_perturbations)
        rows = np.zeros((q, k), dtype=np.int64)
        valid = np.zeros((q, k), dtype=bool)
        same = np.zeros((q, k), dtype=bool)
        for i, (p, c) in enumerate(zip(query_perturbations, query_cell_types, strict=True)):
            chosen = [(r, True) for r in by_pert.get(p, []) if self.cell_types[r] != c]
            for name in ranked_neighbours[i]:
                if len(chosen) >= k:
                    break
                row = by_key.get((name, c))
                if row is not None and name != p:
                    chosen.append((row, False))
            for j, (row, is_same) in enumerate(chosen[:k]):
                rows[i, j], valid[i, j], same[i, j] = row, True, is_same
        return MemoryCandidates(rows, valid, same)
