"""The Lightning Trainer ptrag uses, with atomic checkpoint files and without Lightning's chatter."""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import Logger
from lightning.pytorch.plugins.io import TorchCheckpointIO

from ptrag.config import Config
from ptrag.progress import Progress, progress_bar
from ptrag.run.checkpoint import write_checkpoint

__all__ = ["AtomicCheckpointIO", "StepProgress", "build_trainer", "log_interval", "quiet_lightning"]

# Messages that say nothing to a ptrag user: ptrag has no validation loop of Lightning's (it
# validates in its own callback), reads data in the main process on a CPU on purpose
# (train.num_workers), and loads its own checkpoints. Other warnings — NaN, precision, device or DDP
# problems — still show.
IRRELEVANT_WARNINGS = (
    r".*isinstance\(treespec, LeafSpec\).*",
    r".*does not have many workers.*",
    r".*weights_only.*",
    r".*smaller than the logging interval.*",
    r".*limit_val_batches.*",
    r".*Checkpoint directory .* exists and is not empty.*",
)
LIGHTNING_LOGGERS = ("lightning", "lightning.pytorch", "lightning.fabric")


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, through ``ptrag.run.checkpoint.write_checkpoint``."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        write_checkpoint(checkpoint, path)


class StepProgress(Callback):
    """Training progress through ``ptrag.progress`` (stderr; plain lines off a terminal): the step,
    with the metrics logged for the progress bar, refreshed every ``refresh_rate`` steps."""

    def __init__(self, refresh_rate: int = 10) -> None:
        self.refresh_rate = refresh_rate
        self._bar: Progress | None = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            self._bar = progress_bar(total=trainer.max_steps, desc="train", unit="step")
            self._bar.update(trainer.global_step)

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if self._bar is None:
            return
        if trainer.global_step % self.refresh_rate == 0:
            self._bar.set_postfix(**trainer.progress_bar_metrics)
        self._bar.update(trainer.global_step - self._bar.n)

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


@contextlib.contextmanager
def quiet_lightning(verbose: bool = False) -> Iterator[None]:
    """Hide Lightning's banners ("GPU available", tips, "max_steps reached") and irrelevant warnings.

    Its info lines go through the ``lightning`` loggers, set to WARNING for the block; ``verbose``
    (``ptrag -v``) keeps them.
    """
    loggers = [logging.getLogger(name) for name in LIGHTNING_LOGGERS]
    levels = [logger.level for logger in loggers]
    with warnings.catch_warnings():
        for pattern in IRRELEVANT_WARNINGS:
            warnings.filterwarnings("ignore", message=pattern)
        if not verbose:
            for logger in loggers:
                logger.setLevel(logging.WARNING)
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels, strict=True):
                logger.setLevel(level)


def _loggers(run_dir: Path, config: Config) -> list[Logger]:
    loggers: list[Logger] = []
    if config.train.tensorboard:
        from lightning.pytorch.loggers import TensorBoardLogger

        loggers.append(TensorBoardLogger(save_dir=str(run_dir), name="", version="tensorboard"))
    if config.train.wandb:
        from lightning.pytorch.loggers import WandbLogger

        loggers.append(WandbLogger(save_dir=str(run_dir)))
    return loggers


def log_interval(config: Config) -> int:
    return max(1, min(50, config.train.max_steps // 20))


def build_trainer(
    config: Config, run_dir: Path, callbacks: Sequence[Callback] = (), progress: bool = True
) -> L.Trainer:
    t = config.train
    devices: int | str = int(t.devices) if t.devices.isdigit() else t.devices
    loggers = _loggers(run_dir, config)
    return L.Trainer(
        max_steps=t.max_steps,
        accelerator=t.accelerator,
        devices=devices,
        num_nodes=t.num_nodes,
        strategy=t.strategy,
        precision=t.precision,  # type: ignore[arg-type]
        gradient_clip_val=t.grad_clip or None,
        limit_val_batches=0,  # ptrag.training.progress validates
        num_sanity_val_steps=0,
        logger=loggers or False,
        log_every_n_steps=log_interval(config),
        callbacks=[*callbacks, *([StepProgress(refresh_rate=10)] if progress else [])],
        enable_checkpointing=False,  # ptrag.training.progress writes last.ckpt and best.ckpt
        enable_progress_bar=False,  # StepProgress reports it
        enable_model_summary=False,
        use_distributed_sampler=False,
        deterministic=t.deterministic,
        plugins=[AtomicCheckpointIO()],
        default_root_dir=str(run_dir),
    )
