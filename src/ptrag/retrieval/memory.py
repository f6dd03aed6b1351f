"""Evidence memory (beyond the paper, DESIGN.md §3): retrieve what was observed.

Rows are measured (perturbation, cell type) pairs — the training split's, plus any added later with
``ptrag memory add`` — each carrying its evidence: the mean shift (perturbed mean minus the control
mean of that cell type, log1p space), the squared standard error of that shift per gene, and the
number of perturbed cells behind it. A query (p, c) retrieves "p in other cell types" first, then
"neighbours of p in c" in order of embedding similarity; the query's own row (p, c) is never
retrieved.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import sparse

from ptrag.data.dataset import PerturbationDataset
from ptrag.retrieval.database import random_scores, top_k

__all__ = ["MemoryCandidates", "ResponseMemory"]


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
    # (M, G) squared standard error of each shift: var(perturbed)/n + var(control)/n_control. Zeros
    # when unknown, which turns the evidence path's noise shrinkage off for that row.
    noise: np.ndarray = field(default=None)  # type: ignore[assignment]
    counts: np.ndarray = field(default=None)  # type: ignore[assignment]  # (M,) perturbed cells

    def __post_init__(self) -> None:
        if self.noise is None:
            object.__setattr__(self, "noise", np.zeros_like(self.shifts))
        if self.counts is None:
            object.__setattr__(self, "counts", np.zeros(len(self.shifts), dtype=np.int64))

    def subset(self, rows: np.ndarray, columns: np.ndarray | None = None) -> ResponseMemory:
        """The memory restricted to ``rows`` (and gene ``columns``, in that order)."""
        rows = np.asarray(rows, dtype=np.int64)
        genes = slice(None) if columns is None else np.asarray(columns, dtype=np.int64)
        return ResponseMemory(
            tuple(self.perturbations[i] for i in rows),
            tuple(self.cell_types[i] for i in rows),
            self.shifts[rows][:, genes],
            self.noise[rows][:, genes],
            self.counts[rows],
        )

    def merged(self, other: ResponseMemory, replace: bool = False) -> ResponseMemory:
        """This memory plus ``other``'s rows; a (perturbation, cell type) in both is an error unless
        ``replace``, when ``other``'s measurement wins."""
        keys = set(zip(other.perturbations, other.cell_types, strict=True))
        own = zip(self.perturbations, self.cell_types, strict=True)
        kept = [i for i, key in enumerate(own) if key not in keys]
        if len(kept) < len(self) and not replace:
            both = sorted(
                f"{p}@{c}" for p, c in zip(self.perturbations, self.cell_types, strict=True) if (p, c) in keys
            )
            raise ValueError(f"already in the memory: {', '.join(both[:20])}")
        base = self.subset(np.array(kept, dtype=np.int64))
        return ResponseMemory(
            base.perturbations + other.perturbations,
            base.cell_types + other.cell_types,
            np.concatenate([base.shifts, other.shifts]),
            np.concatenate([base.noise, other.noise]),
            np.concatenate([base.counts, other.counts]),
        )

    @classmethod
    def from_training_cells(
        cls, dataset: PerturbationDataset, train_mask: np.ndarray, chunk_size: int = 4096
    ) -> ResponseMemory:
        """Evidence of every (perturbation, cell type) among the cells ``train_mask`` marks.

        Control cells always serve as the controls of their cell type, whatever the mask says.
        """
        conditions = dataset.conditions
        use = train_mask | conditions.is_control
        uniq, inverse = np.unique(conditions.code[use], return_inverse=True)
        sums = np.zeros((len(uniq), dataset.n_genes), dtype=np.float64)
        squares = np.zeros((len(uniq), dataset.n_genes), dtype=np.float64)
        counts = np.bincount(inverse, minlength=len(uniq)).astype(np.float64)
        cells = np.flatnonzero(use)
        for start in range(0, len(cells), chunk_size):
            block = cells[start : start + chunk_size]
            # A sparse group-indicator product sums each group's rows far faster than np.add.at.
            indicator = sparse.csr_matrix(
                (np.ones(len(block)), (inverse[start : start + chunk_size], np.arange(len(block)))),
                shape=(len(uniq), len(block)),
            )
            values = dataset.expression.rows(block).astype(np.float64)
            sums += indicator @ values
            squares += indicator @ (values * values)
        means = sums / counts[:, None]
        # Unbiased per-gene variance of each group; its square error term is variance / n.
        variances = np.maximum(squares / counts[:, None] - means**2, 0.0)
        variances *= (counts / np.maximum(counts - 1, 1))[:, None]
        parts = [conditions.name(int(code)) for code in uniq]
        control = {c: i for i, (c, p) in enumerate(parts) if p == dataset.control_label}
        rows = [
            (i, control[c]) for i, (c, p) in enumerate(parts) if p != dataset.control_label and c in control
        ]
        if not rows:
            return cls((), (), np.zeros((0, dataset.n_genes), np.float32))
        group, ctrl = (np.array(column, dtype=np.int64) for column in zip(*rows, strict=True))
        noise = variances[group] / counts[group, None] + variances[ctrl] / counts[ctrl, None]
        return cls(
            tuple(parts[i][1] for i in group),
            tuple(parts[i][0] for i in group),
            (means[group] - means[ctrl]).astype(np.float32),
            noise.astype(np.float32),
            counts[group].astype(np.int64),
        )

    def __len__(self) -> int:
        return len(self.perturbations)

    def candidates(
        self,
        query_perturbations: Sequence[str],
        query_cell_types: Sequence[str],
        ranked_neighbours: Sequence[Sequence[str]],
        k: int,
        shuffled: bool = False,
    ) -> MemoryCandidates:
        """For each query (p, c): rows of p in other cell types, then rows of p's neighbours in c.

        ``shuffled`` (an ablation) takes K random rows instead (seeded by the query), never (p, c).
        """
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
            if shuffled:
                scores = random_scores([f"{p}@{c}"], len(self))[0]
                if (p, c) in by_key:
                    scores[by_key[(p, c)]] = -np.inf
                order = top_k(scores, min(k, len(self) - ((p, c) in by_key)))
                for j, row in enumerate(order.tolist()):
                    rows[i, j], valid[i, j], same[i, j] = row, True, self.perturbations[row] == p
                continue
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
