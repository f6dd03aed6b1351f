"""After training: how much of the learned response to keep, chosen on the validation sets.

Every arm with the expression-space output predicts ŷ = ReLU(anchored control + evidence + s · W_out
T(h)). Training fits W_out with s = 1; on the built-in screen's validation groups the memory arm's
prediction was better with the learned per-cell correction scaled down (docs/retrieval.md). So the
best checkpoint gets the factor s from a small grid with the lowest validation loss, like a
temperature chosen after training. s = 1 wins ties: the trained model is kept unless validation says
otherwise. Only best.ckpt changes (last.ckpt, which ``--resume`` reads, keeps training's state).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import torch

from ptrag.run.checkpoint import RESIDUAL_SCALE_KEY, read_checkpoint, write_checkpoint
from ptrag.training.module import PerturbationLightningModule
from ptrag.training.progress import validation_loss

log = logging.getLogger(__name__)

RESIDUAL_SCALES: tuple[float, ...] = (1.0, 0.75, 0.5, 0.25, 0.0)


def calibrate_residual(
    module: PerturbationLightningModule, batches: Sequence[dict[str, torch.Tensor]], best: Path
) -> float:
    """Load ``best`` into ``module``, pick the scale with the lowest validation loss, write it back."""
    payload = read_checkpoint(best)
    module.load_state_dict(payload["state_dict"])
    generator = module.model.generator
    losses: dict[float, float] = {}
    for scale in RESIDUAL_SCALES:
        generator.residual_scale = scale
        losses[scale], _ = validation_loss(module, batches)
    generator.residual_scale = 1.0
    chosen = min(RESIDUAL_SCALES, key=lambda s: (losses[s], -s))  # ties: the larger scale
    payload[RESIDUAL_SCALE_KEY] = chosen
    payload["residual_scale_val_losses"] = {str(s): loss for s, loss in losses.items()}
    write_checkpoint(payload, best)
    log.info(
        "learned response scaled by %g in the best checkpoint, chosen on validation (val loss %.4f at 1, "
        "%.4f at %g)",
        chosen,
        losses[1.0],
        losses[chosen],
        chosen,
    )
    return chosen
