"""Validation, best and last checkpoints, early stopping and metrics.csv, at the end of each step.

One callback does all of them in a fixed order (log, validate, keep the best, decide to stop, save
last), so the state a checkpoint records — best loss, its step, validations without improvement —
is the state after that step's validation, and a run resumed from it continues exactly as the
interrupted one would have.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch

from ptrag.config import Config
from ptrag.run.checkpoint import CHECKPOINT_FILES, CHECKPOINT_KEY, run_info, write_checkpoint
from ptrag.training.metrics import MetricsLog
from ptrag.training.module import PerturbationLightningModule

__all__ = ["STATE_KEY", "RunProgress", "validation_loss", "validation_pass"]

Batch = dict[str, torch.Tensor]
STATE_KEY = "ptrag_run_progress"


def checks_every_step(device: torch.device) -> bool:
    """Whether the training loss's finiteness is read at every step: only where that costs no wait."""
    return device.type == "cpu"


class RunProgress(L.Callback):
    def __init__(
        self,
        run_dir: Path,
        config: Config,
        val_batches: Sequence[Batch] | None,
        metrics: MetricsLog,
        log_every: int,
    ) -> None:
        self.run_dir = run_dir
        self.train = config.train
        self.val_batches = val_batches
        self.metrics = metrics
        self.log_every = log_every
        self.best_loss = math.inf
        self.best_step = -1
        # The deterministic (prediction-time) selection rate on the val sets at the best step.
        self.best_selection_rate: float | None = None
        self.bad_validations = 0
        self.stopped = ""  # "early" or "max_steps" once training has ended
        self.stopped_step = -1
        self._started = 0.0
        self.validation_seconds = 0.0  # wall time spent validating in this process (not checkpointed)

    @property
    def state_key(self) -> str:
        return STATE_KEY

    def state_dict(self) -> dict[str, Any]:
        keys = ("best_loss", "best_step", "best_selection_rate", "bad_validations", "stopped", "stopped_step")
        return {key: getattr(self, key) for key in keys}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        for key, value in state_dict.items():
            setattr(self, key, value)
        if self.stopped == "max_steps":  # a finished run extended to more steps trains on
            self.stopped, self.stopped_step = "", -1

    def on_train_batch_start(self, *args: Any) -> None:
        self._started = time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        assert isinstance(pl_module, PerturbationLightningModule)
        step, last = trainer.global_step, trainer.global_step >= self.train.max_steps
        validating = bool(self.val_batches) and (step % self.train.val_every == 0 or last)
        logging = step % self.log_every == 0 or last or validating  # train loss beside every val loss
        saving = step % self.train.checkpoint_every == 0 and not last
        # The loss's finiteness is read where the host waits for the device anyway (it logs, at
        # least every 50 steps, validates or saves), and at every step on a CPU, where it is free.
        if logging or saving or checks_every_step(pl_module.device):
            pl_module.raise_if_not_finite()
        row: dict[str, object] = {}
        if logging:
            row = {key: float(value) for key, value in pl_module.step_values.items()}
            row["train/step_time_s"] = time.perf_counter() - self._started
        if validating:
            started = time.perf_counter()
            row |= self._validate(trainer, pl_module, step)
            self.validation_seconds += time.perf_counter() - started
        if last and not self.stopped:
            self.stopped, self.stopped_step = "max_steps", step
        if row and trainer.is_global_zero:
            self.metrics.append(
                {**row, "step": step, "stopped": self.stopped if step == self.stopped_step else ""}
            )
        if saving and not self.stopped:
            trainer.save_checkpoint(self.run_dir / CHECKPOINT_FILES["last"])

    def _validate(
        self, trainer: L.Trainer, module: PerturbationLightningModule, step: int
    ) -> dict[str, object]:
        with module.evaluated_weights():
            loss, rate = validation_loss(module, self.val_batches or [])
            # Every rank validates the same sets; averaging keeps their decisions identical bit for bit.
            loss = float(trainer.strategy.reduce(torch.tensor(loss, device=module.device), reduce_op="mean"))
            improved = loss < self.best_loss
            if improved and trainer.is_global_zero:
                payload = {
                    CHECKPOINT_KEY: run_info(module.config, module.spec),
                    "state_dict": module.state_dict(),
                    "global_step": step,
                    "val_loss": loss,
                }
                write_checkpoint(payload, self.run_dir / CHECKPOINT_FILES["best"])
        if improved:
            self.best_loss, self.best_step, self.bad_validations = loss, step, 0
            self.best_selection_rate = rate
        else:
            self.bad_validations += 1
        patience = self.train.patience
        if patience and self.bad_validations >= patience and step < self.train.max_steps:
            trainer.should_stop = True
            self.stopped, self.stopped_step = "early", step
        row: dict[str, object] = {
            "val/loss": loss,
            "val/best_loss": self.best_loss,
            "val/best_step": self.best_step,
        }
        if rate is not None:
            row["val/selection_rate"] = rate
        return row


@contextlib.contextmanager
def validation_pass(module: PerturbationLightningModule) -> Iterator[None]:
    """Eval mode, no gradients, and every random number generator left as it was found, so that
    scoring validation sets never changes the training run; the module's mode is restored after."""
    device = module.device
    devices = [device.index or 0] if device.type == "cuda" else []
    was_training = module.training
    module.eval()
    try:
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            yield
    finally:
        module.train(was_training)


def validation_loss(
    module: PerturbationLightningModule, batches: Sequence[Batch]
) -> tuple[float, float | None]:
    """Mean distribution loss (and selection rate) over fixed validation sets, weighted by sets,
    in a :func:`validation_pass`."""
    total, rates, n_sets = 0.0, [], 0
    with validation_pass(module):
        for batch in batches:
            on_device = {key: value.to(module.device) for key, value in batch.items()}
            distribution, _, output = module.losses(on_device)
            size = int(on_device["control"].shape[0])
            total += float(distribution) * size
            n_sets += size
            rate = output.selection_rate()
            if rate is not None:
                rates.append(float(rate) * size)
    return total / max(n_sets, 1), (sum(rates) / max(n_sets, 1) if rates else None)
