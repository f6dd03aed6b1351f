"""After training: how much of the learned response to keep, chosen on the validation sets.

Every arm with the expression-space output predicts ŷ = anchored control + evidence + s · W_out
T(h). Training fits W_out with s = 1; on the built-in screen's validation groups the memory arm's
prediction was once better with the learned per-cell correction scaled down (docs/retrieval.md,
docs/training.md). So the best checkpoint gets the factor s — and a factor c of the response's
per-cell part — from a small grid with the lowest validation loss, like a temperature chosen after
training. The larger scales win ties: the trained model is kept unless validation says otherwise.
Only best.ckpt changes (last.ckpt, which ``--resume`` reads, keeps training's state)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import torch

from ptrag.run.checkpoint import read_checkpoint, update_checkpoint
from ptrag.training.module import PerturbationLightningModule
from ptrag.training.progress import validation_pass

__all__ = ["RESIDUAL_SCALES", "calibrate_residual", "scaled_validation_losses"]

log = logging.getLogger(__name__)

RESIDUAL_SCALES: tuple[float, ...] = (1.0, 0.75, 0.5, 0.25, 0.0)
# Scales of the response's per-cell part (each cell's response minus its set's mean response).
CELL_SCALES: tuple[float, ...] = (1.0, 0.5, 0.0)


def calibrate_residual(
    module: PerturbationLightningModule, batches: Sequence[dict[str, torch.Tensor]], best: Path
) -> tuple[float, float]:
    """Load ``best`` into ``module``, pick the (scale, per-cell scale) with the lowest validation
    loss, write both back. Ties keep the larger scales: the trained model unless validation says
    otherwise."""
    payload = read_checkpoint(best)
    module.load_state_dict(payload["state_dict"])
    grid = [
        # With no response left, its per-cell part has nothing to scale.
        (scale, cell)
        for scale in RESIDUAL_SCALES
        for cell in (CELL_SCALES if scale > 0 else (1.0,))
    ]
    losses = scaled_validation_losses(module, batches, grid)
    chosen = min(losses, key=lambda key: (losses[key], -key[0], -key[1]))
    record = {"residual_scale_val_losses": {f"{s},{c}": loss for (s, c), loss in losses.items()}}
    update_checkpoint(best, scales=chosen, record=record)
    log.info(
        "learned response scaled by %g, its per-cell part by %g, in the best checkpoint, chosen on "
        "validation (val loss %.4f at 1, 1; %.4f chosen)",
        *chosen,
        losses[(1.0, 1.0)],
        losses[chosen],
    )
    return chosen


def scaled_validation_losses(
    module: PerturbationLightningModule,
    batches: Sequence[dict[str, torch.Tensor]],
    grid: Sequence[tuple[float, float]],
) -> dict[tuple[float, float], float]:
    """``validation_loss`` of the model at every (scale, per-cell scale) of ``grid``, the same numbers
    a validation pass at each would give, from one pass of the network per batch: the scales act
    after it (``STGenerator.combine``)."""
    generator = module.model.generator
    totals = dict.fromkeys(grid, 0.0)
    n_sets = 0
    generator.residual_scale, generator.cell_scale = 1.0, 1.0
    try:
        with validation_pass(module):
            for batch in batches:
                on_device = {key: value.to(module.device) for key, value in batch.items()}
                generator.captured = []
                module(on_device)
                ((base, response, anchor_cells),) = generator.captured
                size = int(on_device["control"].shape[0])
                n_sets += size
                for scale, cell in grid:
                    generator.residual_scale, generator.cell_scale = scale, cell
                    predicted = generator.combine(base, response.clone(), anchor_cells)
                    totals[(scale, cell)] += float(module.distribution(predicted, on_device)) * size
    finally:
        generator.captured = None
        generator.residual_scale, generator.cell_scale = 1.0, 1.0
    return {key: total / max(n_sets, 1) for key, total in totals.items()}
