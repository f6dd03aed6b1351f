"""The on-target knockdown prior applied to predicted cells (``prediction.target_knockdown``).

Every workflow — held-out groups, in-silico queries, screens — passes its model output through
``ptrag.prediction.core.forward_sets``, which hands each batch to :class:`TargetKnockdown`: for
each predicted cell of a perturbation whose target is one of the run's genes, the target's value
becomes ``log1p(R · expm1(x))``, x the cell's own input control value and R a remaining fraction
drawn for that cell from the run's :class:`~ptrag.run.knockdown.KnockdownPrior` (the cell type's
measured targets, or all cell types' when it has too few). Every other gene, and every perturbation
whose target is not a measured gene, keeps the model's output.

The draws are seeded by (prediction seed, cell type, perturbation, the set's place among that
group's sets), so a gene's prediction is the same whatever else is predicted with it.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Sequence

import numpy as np
import torch

from ptrag.data.sets import CellSet
from ptrag.run.checkpoint import Checkpoint
from ptrag.run.knockdown import POOLED_SOURCE, KnockdownPrior

__all__ = ["TargetKnockdown", "knockdown_prior", "set_ordinals"]

log = logging.getLogger(__name__)


def knockdown_prior(checkpoint: Checkpoint) -> KnockdownPrior | None:
    """The prior a prediction from ``checkpoint`` applies, or None (switched off, or none learned)."""
    if checkpoint.config.prediction.target_knockdown == "off":
        return None
    prior = checkpoint.spec.knockdown
    if prior is None:
        log.warning(
            "%s holds no knockdown prior (trained before ptrag learned one), so knocked-down targets "
            "keep the model's own predicted values; retrain to get it (prediction.target_knockdown).",
            checkpoint.path,
        )
        return None
    if not len(prior):
        log.info("The run's training data measured no knockdown of a measured gene: no knockdown prior.")
        return None
    return prior


def _stable(name: str) -> int:
    return zlib.crc32(name.encode("utf-8"))


class TargetKnockdown:
    """Applies a :class:`KnockdownPrior` to batches of predicted cells, in place."""

    def __init__(self, prior: KnockdownPrior, genes: Sequence[str], seed: int) -> None:
        self.prior = prior
        self.column = {gene: j for j, gene in enumerate(genes)}
        self.seed = int(seed)
        self._pools: dict[tuple[str, str], np.ndarray] = {}
        self._pooled_types: set[str] = set()

    def fractions(self, cell_type: str, perturbation: str) -> np.ndarray:
        """The fractions ``(cell type, perturbation)`` draws from (logging a fallback once per cell type)."""
        key = (cell_type, perturbation)
        if key not in self._pools:
            values, source = self.prior.fractions(cell_type, perturbation)
            if source == POOLED_SOURCE and cell_type not in self._pooled_types:
                self._pooled_types.add(cell_type)
                log.info(
                    "knockdown prior for %s: pooled over cell types (%d measured targets; %s has %d)",
                    cell_type,
                    len(values),
                    cell_type,
                    self.prior.counts().get(cell_type, 0),
                )
            self._pools[key] = values.astype(np.float64)
        return self._pools[key]

    def draw(self, cell_type: str, perturbation: str, ordinal: int, n: int) -> np.ndarray:
        """``n`` remaining fractions for the ``ordinal``-th set of ``(cell type, perturbation)``."""
        pool = self.fractions(cell_type, perturbation)
        rng = np.random.default_rng([self.seed, _stable(cell_type), _stable(perturbation), int(ordinal)])
        return pool[rng.integers(len(pool), size=n)]

    def apply(
        self,
        sets: Sequence[CellSet],
        ordinals: Sequence[int],
        control: torch.Tensor,
        predicted: torch.Tensor,
    ) -> None:
        """Set the target gene of every set whose perturbation is a measured gene: ``control`` and
        ``predicted`` are (B, S, G), cell i of a set predicted from its control cell i."""
        rows, columns, fractions = [], [], []
        for i, (cell_set, ordinal) in enumerate(zip(sets, ordinals, strict=True)):
            column = self.column.get(cell_set.perturbation)
            if column is None:
                continue
            pool = self.fractions(cell_set.cell_type, cell_set.perturbation)
            if not len(pool):
                continue
            rows.append(i)
            columns.append(column)
            n_cells = predicted.shape[1]
            fractions.append(self.draw(cell_set.cell_type, cell_set.perturbation, ordinal, n_cells))
        if not rows:
            return
        index = (torch.tensor(rows), slice(None), torch.tensor(columns))
        x = control[index].detach().cpu().numpy().astype(np.float64)  # (n, S): each cell's own value
        knocked = np.log1p(np.stack(fractions) * np.expm1(x))
        predicted[index] = torch.from_numpy(knocked.astype(np.float32)).to(predicted.device, predicted.dtype)


def set_ordinals(sets: Sequence[CellSet]) -> list[int]:
    """Each set's place among the sets of its (cell type, perturbation), in order."""
    seen: dict[tuple[str, str], int] = {}
    ordinals = []
    for cell_set in sets:
        key = (cell_set.cell_type, cell_set.perturbation)
        ordinals.append(seen.get(key, 0))
        seen[key] = ordinals[-1] + 1
    return ordinals
