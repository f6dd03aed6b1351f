"""State gains applied to predicted cells (``prediction.state_gain``; ``ptrag.run.state_gains``).

Each predicted cell's response is moved by ``(gain_{k} − mean gain of its set) · μ̂``, with k the
basal-state stratum of the control cell it was predicted from and μ̂ the set's predicted mean
response (its mean predicted cell minus the anchor it was built on). The set's mean is unchanged.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch

from ptrag.data.sets import CellSet
from ptrag.models.generator import leading_mean
from ptrag.run.checkpoint import Checkpoint
from ptrag.run.state_gains import StateGains

__all__ = ["StateModulation", "response_anchor", "state_gains"]

log = logging.getLogger(__name__)


def state_gains(checkpoint: Checkpoint) -> StateGains | None:
    """The gains a prediction from ``checkpoint`` applies, or None (switched off, or none learned)."""
    wanted = checkpoint.config.prediction.state_gain != "off"
    gains = checkpoint.spec.state_gains
    if wanted and gains is None:
        log.info(
            "%s holds no state gains (trained before ptrag learned them): each cell keeps the "
            "response the model predicted for it (prediction.state_gain).",
            checkpoint.path,
        )
    return gains if wanted and gains is not None and gains.by_cell_type else None


class StateModulation:
    """Applies :class:`StateGains` to batches of predicted cells, in place."""

    def __init__(self, gains: StateGains) -> None:
        self.gains = gains
        # Sets drawn from the same control cells (a screen's shared draw) share their cells' strata;
        # only the strata are kept (a few bytes per cell), not the (cells x genes) gains.
        self._strata: dict[tuple[str, bytes], np.ndarray] = {}
        self._skipped: set[str] = set()

    def _centred_gains(self, cell_set: CellSet, controls: torch.Tensor) -> torch.Tensor | None:
        """(n, G): each cell's gains minus their mean over the set, or None without gains."""
        gains = self.gains.get(cell_set.cell_type)
        if gains is None:
            if cell_set.cell_type not in self._skipped:
                self._skipped.add(cell_set.cell_type)
                log.info(
                    "state gains: none learned for %s; its cells keep their predicted responses",
                    cell_set.cell_type,
                )
            return None
        key = (cell_set.cell_type, cell_set.control_idx[: cell_set.n_real].tobytes())
        if key not in self._strata:
            self._strata[key] = gains.strata_of(controls.detach().cpu().numpy()).astype(np.int8)
        cell_gains = gains.gains[self._strata[key]]
        return torch.from_numpy(cell_gains - cell_gains.mean(axis=0))

    def apply(
        self,
        sets: Sequence[CellSet],
        control: torch.Tensor,
        predicted: torch.Tensor,
        anchor: torch.Tensor,
    ) -> None:
        """``control`` and ``predicted`` (B, S, G), cell i of a set predicted from its control cell
        i; ``anchor`` (B, G): what each set's cells were moved from before their response (the
        control pool re-centred on the input mean, or the input cells themselves). Sets that share
        their control cells (a screen) are moved in one batched step."""
        together: dict[tuple[str, bytes], list[int]] = {}
        for i, cell_set in enumerate(sets):
            if cell_set.n_real >= 2:
                key = (cell_set.cell_type, cell_set.control_idx[: cell_set.n_real].tobytes())
                together.setdefault(key, []).append(i)
        for rows in together.values():
            first = sets[rows[0]]
            n = first.n_real
            centred = self._centred_gains(first, control[rows[0], :n])
            if centred is None:
                continue
            centred = centred.to(predicted.device, predicted.dtype)
            if len(rows) == len(sets):  # one shared draw for the whole batch (a screen): in place
                cells = predicted[:, :n]
                response = cells.mean(dim=1) - anchor
                cells.add_(centred[None] * response[:, None, :])
                continue
            index = torch.tensor(rows)
            cells = predicted[index, :n]  # (r, n, G)
            response = cells.mean(dim=1) - anchor[index]  # (r, G)
            predicted[index, :n] = cells + centred[None] * response[:, None, :]


def response_anchor(batch: dict[str, torch.Tensor], generator: torch.nn.Module) -> torch.Tensor:
    """(B, G): what each set's predicted cells average without their response.

    An expression-space residual anchored on the control pool moves control cell x to ``x − input
    mean + pool mean`` before adding the response; unanchored, it adds the response to ``x``
    itself; the paper's basal residual predicts cells outright, so its response is measured from
    the control pool.
    """
    own = leading_mean(batch["control"], batch["anchor_cells"])[:, 0]
    pool = batch.get("control_mean")
    if pool is None:
        return own
    if getattr(generator, "output_residual", "expression") != "expression":
        return pool
    if getattr(generator, "anchor", "none") == "none":
        return own
    input_mean = batch.get("input_mean")
    return own - (own if input_mean is None else input_mean) + pool
