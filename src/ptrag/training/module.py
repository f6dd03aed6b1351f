"""The Lightning module around a PerturbationModel: losses, logging and checkpoint contents."""

from __future__ import annotations

import contextlib
import random
from typing import Any

import lightning as L
import numpy as np
import torch

from ptrag.config import Config
from ptrag.errors import TrainingError
from ptrag.keys import AVERAGE_KEY, MODEL_PREFIX
from ptrag.models import ModelOutput, SetDistributionLoss
from ptrag.models.losses import SetDistances, stratified_energy
from ptrag.run.build import build_model
from ptrag.run.checkpoint import CHECKPOINT_KEY, run_info
from ptrag.run.spec import ModelSpec
from ptrag.training.averaging import WeightAverage

__all__ = ["PerturbationLightningModule"]

RNG_KEY = "ptrag_rng_states"


def rng_states() -> dict[str, Any]:
    """Every random number generator training draws from (Gumbel noise uses torch's global one).

    Stored as tensors and plain values, so the checkpoint loads with ``torch.load(weights_only=True)``.
    """
    name, keys, position, has_gauss, gauss = np.random.get_state()
    states: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": [name, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, gauss],
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    name, keys, position, has_gauss, gauss = states["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), position, has_gauss, gauss))
    random.setstate(states["python"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


class PerturbationLightningModule(L.LightningModule):
    def __init__(self, config: Config, spec: ModelSpec) -> None:
        super().__init__()
        self.config = config
        self.spec = spec
        self.model = build_model(config, spec)
        self.distribution_loss = SetDistributionLoss(config.model.loss, config.model.sinkhorn_blur)
        # The last step's values (detached tensors), for metrics.csv; read every few steps only,
        # so that logging does not synchronise a GPU on every step.
        self.step_values: dict[str, torch.Tensor | float] = {}
        # The first training step whose loss was not finite (-1: none yet) and that loss, on the
        # device (``raise_if_not_finite``).
        self._first_bad_step: torch.Tensor | None = None
        self._first_bad_loss: torch.Tensor | None = None
        decay = config.train.ema_decay
        self.weight_average = WeightAverage(self.model, decay) if decay > 0 else None

    def forward(self, batch: dict[str, torch.Tensor]) -> ModelOutput:
        return self.model.on_batch(batch)

    def losses(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, ModelOutput]:
        output = self(batch)
        distribution = self.distribution(output.predicted, batch)
        rate = output.charged_rate()
        r = self.config.retrieval
        if rate is None:
            sparsity = distribution * 0.0
        elif r.sparsity == "relative":
            # On the loss's own scale, so it cannot swamp the distributional loss whatever its
            # magnitude. Signed: the unbiased energy is negative once a prediction is closer than two
            # samples of the truth, and there the term rewards keeping (by at most λ of the loss).
            # Charging |loss| instead was measured on replogle-hetero validation: the selector then
            # kept 26-37 % at the default λ and 3x less, and energy_strata and energy_gene got worse
            # (docs/retrieval.md), so the signed form stays.
            sparsity = r.sparsity_weight * rate * distribution.detach()
        else:
            sparsity = r.sparsity_weight * rate
        return distribution, sparsity, output

    def distribution(self, predicted: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The distributional loss of predicted sets against the batch's target sets: the configured
        loss, mixed with the energy within basal-state strata when that has a weight."""
        weight = self.config.model.strata_loss_weight
        if not (weight > 0 and "control_stratum" in batch):
            return self.distribution_loss(predicted, batch["target"])
        strata = (batch["control_stratum"], batch["target_stratum"])
        if self.distribution_loss.kind == "energy_unbiased":
            # One set of distance matrices for the pooled and the stratified energy.
            distances = SetDistances.of(predicted, batch["target"])
            pooled = distances.energy_unbiased().mean()
            stratified = distances.stratified(*strata).mean()
        else:
            pooled = self.distribution_loss(predicted, batch["target"])
            stratified = stratified_energy(predicted, batch["target"], *strata).mean()
        return (1.0 - weight) * pooled + weight * stratified

    def mean_loss(self, output: ModelOutput, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """``model.mean_loss_weight`` × MSE between predicted and observed set means (0 when off)."""
        weight = self.config.model.mean_loss_weight
        if not weight:
            return output.predicted.new_zeros(())
        gap = output.predicted.mean(dim=1) - batch["target"].mean(dim=1)
        return weight * (gap * gap).mean()

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        distribution, sparsity, output = self.losses(batch)
        loss = distribution + sparsity + self.mean_loss(output, batch)
        self._record_finiteness(loss.detach())
        n_sets = batch["control"].shape[0]
        values: dict[str, torch.Tensor | float] = {
            "train/loss": loss.detach(),
            "train/distribution_loss": distribution.detach(),
        }
        rate = output.selection_rate()
        if rate is not None:
            kept = output.kept_per_set()
            assert kept is not None
            values |= {
                "train/sparsity_loss": sparsity.detach(),
                "train/selection_rate": rate.detach(),
                "train/kept_per_set": kept.mean(),
            }
        self.step_values = values
        # The progress bar (and TensorBoard / W&B when enabled) show the headline numbers.
        self.log("train/loss", loss, prog_bar=True, batch_size=n_sets)
        if rate is not None:
            self.log("train/selection_rate", rate, prog_bar=True, batch_size=n_sets)
        return loss

    def _record_finiteness(self, loss: torch.Tensor) -> None:
        """Remember the first step whose loss is not finite, on the loss's device.

        Reading the loss on the host at every step would make the host wait for the device at every
        step; ``raise_if_not_finite`` reads this record only when the host synchronises anyway.
        """
        if self._first_bad_step is None or self._first_bad_step.device != loss.device:
            self._first_bad_step = torch.full((), -1, dtype=torch.long, device=loss.device)
            self._first_bad_loss = torch.zeros((), dtype=loss.dtype, device=loss.device)
        first = (~torch.isfinite(loss)) & (self._first_bad_step < 0)
        self._first_bad_step = torch.where(first, self.global_step, self._first_bad_step)
        self._first_bad_loss = torch.where(first, loss, self._first_bad_loss)

    def raise_if_not_finite(self) -> None:
        """Stop training, naming the step, if a training loss so far was NaN or infinite.

        Called before anything is written (metrics, validation, checkpoints), so the last checkpoint
        written is one from before that step.
        """
        if self._first_bad_step is None:
            return
        step = int(self._first_bad_step)
        if step >= 0:
            raise TrainingError(
                f"The training loss became {float(self._first_bad_loss)} at step {step}. "
                "Training stopped: the last good checkpoint is kept in the partial run beside --out "
                "(an earlier run in --out is unchanged). Lower train.lr or check the input data for "
                "extreme values."
            )

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        super().optimizer_step(*args, **kwargs)
        if self.weight_average is not None:
            self.weight_average.update(self.model)

    def evaluated_weights(self) -> contextlib.AbstractContextManager[None]:
        """The weights validation scores and ``best.ckpt`` keeps: the average when there is one."""
        if self.weight_average is None:
            return contextlib.nullcontext()
        return self.weight_average.swapped_in(self.model)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        t = self.config.train
        return torch.optim.Adam(self.model.parameters(), lr=t.lr, weight_decay=t.weight_decay)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[CHECKPOINT_KEY] = run_info(self.config, self.spec)
        checkpoint[RNG_KEY] = rng_states()
        if self.weight_average is not None:
            checkpoint[AVERAGE_KEY] = self.weight_average.state_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Resuming continues the exact random streams of the interrupted run (Gumbel noise).
        if RNG_KEY in checkpoint:
            restore_rng_states(checkpoint[RNG_KEY])
        if self.weight_average is None:
            return
        if AVERAGE_KEY in checkpoint:
            self.weight_average.load_state_dict(checkpoint[AVERAGE_KEY])
        else:  # written before averaging existed: average from the resumed weights on
            weights = checkpoint["state_dict"]
            self.weight_average.restart({k.removeprefix(MODEL_PREFIX): v for k, v in weights.items()})
