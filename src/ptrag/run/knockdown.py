"""The on-target knockdown prior: how far a CRISPRi knockdown lowers its own target (DESIGN.md §9).

A knockdown lowers its target: that is the one gene of a prediction we are surest about, whether
or not anybody measured the perturbation. The run learns, per cell type, how far the training
perturbations whose target is a measured gene lowered it, and prediction applies that to every
perturbation whose target is a measured gene (``ptrag.prediction.knockdown``; docs/prediction.md).

What is learned is each training perturbation's **remaining fraction in expression space**,
R = mean expm1(target | perturbed cells) / mean expm1(target | the cell type's control cells),
and prediction gives each cell ``log1p(R · expm1(x))`` for its own input control value x, with R
drawn per cell from the cell type's fractions. Why a fraction in expression space and not a
log-fold change in log1p space: how far log1p values fall depends on how high the target is
expressed (a gene at log1p 0.1 cannot fall by 0.7), while CRISPRi removes a share of the
transcripts whatever their level. Measured on the simulated ``replogle-like`` screen (unseen
split's training groups, each measured target left out in turn and predicted from the others';
``benchmarks/own_target.py --choose``): the target's mean change was off by +0.04 log1p on average
(mean absolute error 0.11) with the fraction, by +0.25 (0.26) with a per-cell log1p change, and the
per-cell W1 to the real cells was 0.18 vs 0.28. A per-cell fraction (each perturbed cell over the
control mean) multiplies the control cell's noise by the perturbed cell's and overshot (bias −0.14,
W1 0.23).

Only training groups are read (never a validation or test group), so a held-out measurement can
never inform its own prediction; a (perturbation, cell type) never uses its own fraction either
(``fractions``), the memory's rule.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ptrag.data.dataset import CONTROL_MEAN_CHUNK, PerturbationDataset
from ptrag.errors import format_list

__all__ = ["POOLED_SOURCE", "KnockdownPrior"]

log = logging.getLogger(__name__)

# A cell type with fewer measured targets than this draws from the fractions pooled over every
# cell type instead (said in the log): ten values give the median within about ±0.03 of the
# simulated screens' spread (remaining fractions 0.07-0.28).
MIN_TARGETS_PER_CELL_TYPE = 10
# A target expressed in fewer control cells than this share, or measured in fewer perturbed cells,
# gives a fraction that is mostly noise (a ratio of two near-zero means); it is left out.
MIN_CONTROL_DETECTION = 0.1
MIN_PERTURBED_CELLS = 10

CELL_TYPE_SOURCE = "cell type"
POOLED_SOURCE = "pooled"


@dataclass(frozen=True)
class KnockdownPrior:
    """One row per training (perturbation, cell type) whose target is a measured gene: the target's
    remaining fraction in expression space (see the module docstring)."""

    perturbations: tuple[str, ...]
    cell_types: tuple[str, ...]
    remaining: np.ndarray  # (n,) float32

    def __post_init__(self) -> None:
        if not len(self.perturbations) == len(self.cell_types) == len(self.remaining):
            raise ValueError("a knockdown prior needs one perturbation, cell type and fraction per row")

    def __len__(self) -> int:
        return len(self.perturbations)

    @classmethod
    def from_training_groups(
        cls, dataset: PerturbationDataset, groups: Sequence[tuple[str, str]]
    ) -> KnockdownPrior:
        """The fraction of every training ``(cell type, perturbation)`` group whose perturbation is
        one of ``dataset.genes``, against the cell type's control cells (one pass over them)."""
        column = {gene: j for j, gene in enumerate(dataset.genes)}
        conditions = dataset.conditions
        wanted = [(c, p) for c, p in groups if p in column]
        control_stats: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for cell_type in sorted({c for c, _ in wanted}):
            targets = sorted({column[p] for c, p in wanted if c == cell_type})
            control_stats[cell_type] = _control_stats(dataset, cell_type, np.array(targets))
        perturbations, cell_types, remaining = [], [], []
        skipped: list[str] = []
        for cell_type, perturbation in wanted:
            stats = control_stats[cell_type]
            cells = conditions.cells((cell_type, perturbation))
            j = column[perturbation]
            where = int(np.searchsorted(stats[0], j))
            mean, detected = stats[1][where]
            if mean <= 0 or detected < MIN_CONTROL_DETECTION or cells.size < MIN_PERTURBED_CELLS:
                skipped.append(f"{cell_type}/{perturbation}")
                continue
            values = dataset.expression.rows(cells)[:, j].astype(np.float64)
            perturbations.append(perturbation)
            cell_types.append(cell_type)
            remaining.append(np.expm1(values).mean() / mean)
        if skipped:
            log.info(
                "knockdown prior: left out %d training target(s) detected in under %.0f%% of their "
                "control cells or with under %d perturbed cells: %s",
                len(skipped),
                100 * MIN_CONTROL_DETECTION,
                MIN_PERTURBED_CELLS,
                format_list(skipped),
            )
        return cls(tuple(perturbations), tuple(cell_types), np.array(remaining, dtype=np.float32))

    def fractions(self, cell_type: str, perturbation: str) -> tuple[np.ndarray, str]:
        """The fractions a prediction of ``(cell type, perturbation)`` draws from, and their source.

        The cell type's own (``"cell type"``) when it has at least ``MIN_TARGETS_PER_CELL_TYPE``,
        else those of every cell type (``"pooled"``). The pair's own row is left out in both: a
        prediction never uses its own measurement (as the memory never retrieves it), so it is the
        same whether or not the pair was a training one.
        """
        of_type = np.array([c == cell_type for c in self.cell_types], dtype=bool)
        own = of_type & np.array([p == perturbation for p in self.perturbations], dtype=bool)
        of_type &= ~own
        if of_type.sum() >= MIN_TARGETS_PER_CELL_TYPE:
            return self.remaining[of_type], CELL_TYPE_SOURCE
        return self.remaining[~own], POOLED_SOURCE

    def counts(self) -> dict[str, int]:
        """Measured targets per cell type."""
        names, counts = np.unique(np.array(self.cell_types, dtype=object), return_counts=True)
        return {str(n): int(k) for n, k in zip(names, counts, strict=True)}

    def describe(self) -> str:
        """One line for the training log: fractions per cell type, and which cell types fall back."""
        if not len(self):
            return (
                "knockdown prior: no training perturbation targets a measured gene, so there is "
                "nothing to learn the knockdown from; predictions keep the model's own target values"
            )
        parts = []
        for cell_type, n in self.counts().items():
            values = self.remaining[np.array(self.cell_types) == cell_type]
            fallback = "" if n >= MIN_TARGETS_PER_CELL_TYPE else ", too few: pooled over cell types"
            parts.append(f"{cell_type} {n} targets, median remaining {np.median(values):.2f}{fallback}")
        return f"knockdown prior (target's remaining fraction in expression space): {'; '.join(parts)}"

    def to_state(self) -> dict[str, Any]:
        return {
            "perturbations": [str(p) for p in self.perturbations],
            "cell_types": [str(c) for c in self.cell_types],
            "remaining": torch.from_numpy(np.asarray(self.remaining, dtype=np.float32)),
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> KnockdownPrior:
        remaining = state["remaining"]
        values = remaining.numpy() if isinstance(remaining, torch.Tensor) else np.asarray(remaining)
        return cls(tuple(state["perturbations"]), tuple(state["cell_types"]), values.astype(np.float32))


def _control_stats(
    dataset: PerturbationDataset, cell_type: str, columns: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``columns`` (sorted) and, per column, the control cells' mean expm1 and detected share."""
    cells = dataset.conditions.controls(cell_type)
    total = np.zeros(len(columns), dtype=np.float64)
    detected = np.zeros(len(columns), dtype=np.float64)
    for start in range(0, cells.size, CONTROL_MEAN_CHUNK):
        block = dataset.expression.rows(cells[start : start + CONTROL_MEAN_CHUNK])[:, columns]
        total += np.expm1(block.astype(np.float64)).sum(axis=0)
        detected += (block > 0).sum(axis=0)
    n = max(cells.size, 1)
    return columns, np.stack([total / n, detected / n], axis=1)
