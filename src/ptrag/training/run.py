"""Train a model into a run directory; resume an interrupted run.

The run is written into a partial directory beside the run directory (``ptrag.training.resume``)
and moved into place only once training has finished: a run that fails, or is killed, leaves an
earlier run of the same name as it was, and ``--resume`` continues the partial one.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader

from ptrag.config import Config
from ptrag.data.dataset import PerturbationDataset
from ptrag.data.sets import SetSampler
from ptrag.data.splits import Split
from ptrag.data.strata import cell_strata
from ptrag.io import replace_dir
from ptrag.retrieval import COLLAPSED_SELECTION
from ptrag.run.checkpoint import CHECKPOINT_FILES
from ptrag.run.layout import METRICS_FILE, write_run_config, write_run_files
from ptrag.run.tensors import SetTensorizer
from ptrag.run.threads import configure_threads
from ptrag.training.batches import TrainingSteps, choose_workers, fixed_batches, step_loader
from ptrag.training.calibration import calibrate_residual
from ptrag.training.metrics import MetricsLog
from ptrag.training.module import PerturbationLightningModule
from ptrag.training.prepare import PreparedData, prepare
from ptrag.training.progress import RunProgress
from ptrag.training.resume import (
    Plan,
    Progress,
    check_same_data,
    plan_fresh,
    plan_resume,
    resumed_split,
)
from ptrag.training.trainer import build_trainer, log_interval, quiet_lightning

__all__ = ["TrainingOutcome", "train"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainingOutcome:
    run_dir: Path
    steps: int  # optimizer steps the run has taken in all
    stopped: str  # "early" or "max_steps"
    best_step: int  # step of the lowest validation loss (-1: the run never validated)
    message: str  # one line for the user
    # Wall time of this call's phases: validation passes during training, then calibration.
    validation_seconds: float = 0.0
    calibration_seconds: float = 0.0


def _strata(prepared: PreparedData, config: Config) -> np.ndarray | None:
    """Every control, training and validation cell's basal-state stratum, for the stratified loss."""
    if config.model.strata_loss_weight <= 0:
        return None
    if prepared.strata is None:
        groups = prepared.groups_for("train") + prepared.groups_for("val")
        prepared.strata = cell_strata(prepared.dataset, groups)
    return prepared.strata


def _validation_batches(prepared: PreparedData, config: Config) -> list[dict[str, torch.Tensor]]:
    groups = prepared.groups_for("val")
    if not groups:
        return []
    t = config.train
    sets = SetSampler(prepared.dataset, groups, t.cell_set_len, t.seed).fixed_sets()
    # A fixed, evenly spread subset keeps validation cheap and identical across evaluations.
    pick = np.unique(np.linspace(0, len(sets) - 1, num=min(t.val_sets, len(sets))).round().astype(int))
    tensorize = SetTensorizer(prepared.dataset, prepared.spec, config.model.anchor, _strata(prepared, config))
    return fixed_batches([sets[i] for i in pick], tensorize, t.sets_per_batch)


def _training_loader(prepared: PreparedData, config: Config, trainer: L.Trainer) -> DataLoader:
    t = config.train
    sampler = SetSampler(prepared.dataset, prepared.groups_for("train"), t.cell_set_len, t.seed)
    tensorize = SetTensorizer(prepared.dataset, prepared.spec, config.model.anchor, _strata(prepared, config))
    steps = TrainingSteps(sampler, tensorize, t.sets_per_batch, t.seed, trainer.global_rank, t.max_steps)
    device = trainer.strategy.root_device
    workers = choose_workers(t.num_workers, device, trainer.num_devices)
    log.debug("training data: %d loader workers (%s)", workers, device)
    return step_loader(steps, lambda: trainer.global_step, workers, device)


def _summary(
    run_dir: Path,
    arm: str,
    steps: int,
    stopped: str,
    best_step: int,
    rate: float | None = None,
    seconds: tuple[float, float] = (0.0, 0.0),
) -> TrainingOutcome:
    early = " (stopped early)" if stopped == "early" else ""
    best = f"; lowest validation loss at step {best_step}" if best_step >= 0 else ""
    message = f"trained {arm} for {steps} steps{early}{best} → {run_dir}"
    if rate is not None and rate < COLLAPSED_SELECTION:
        log.warning(
            "Selection collapsed: the best checkpoint keeps %.2g%% of retrieved candidates on the "
            "validation sets (under %.0f%%), so retrieval adds next to nothing to its predictions "
            "(train/selection_rate and val/selection_rate in metrics.csv show when).",
            100 * rate,
            100 * COLLAPSED_SELECTION,
        )
    return TrainingOutcome(run_dir, steps, stopped, best_step, message, *seconds)


def train(
    config: Config | None,
    dataset: PerturbationDataset,
    split: Split | None,
    run_dir: str | Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    verbose: bool = False,
) -> TrainingOutcome:
    """Train ``config`` on ``dataset`` with ``split`` into ``run_dir``.

    ``resume`` continues an interrupted run (or extends a finished one to more steps) with the
    run's own config and split: ``config=None`` / ``split=None`` take them as they are; given ones
    may differ from the config only in the resumable keys (``ptrag.training.resume.RESUMABLE_KEYS``)
    and not at all from the split. Resuming a finished run changes nothing and says so.
    """
    run_dir = Path(run_dir)
    if resume:
        plan = plan_resume(run_dir, config)
        split = resumed_split(plan, split, dataset)
    elif config is None or split is None:
        raise ValueError("a new run needs a config and a split")
    else:
        plan = plan_fresh(run_dir, config, overwrite)
    if plan.finished:
        assert plan.resume_from is not None and plan.source is not None
        done = Progress.of(plan.resume_from)
        if plan.source != run_dir:  # killed after its last checkpoint, before it was moved into place
            replace_dir(plan.source, run_dir)
        return TrainingOutcome(run_dir, done.step, done.stopped, done.best_step, plan.finished)
    configure_threads(plan.config.train.num_threads)
    with quiet_lightning(verbose):
        return _fit(plan, dataset, split, run_dir, progress)


def _fit(
    plan: Plan, dataset: PerturbationDataset, split: Split, run_dir: Path, progress: bool
) -> TrainingOutcome:
    config = plan.config
    L.seed_everything(config.train.seed, workers=True, verbose=False)
    prepared = prepare(dataset, split, config)
    if plan.resume_from is not None:
        check_same_data(plan, prepared.spec, run_dir)
    module = PerturbationLightningModule(config, prepared.spec)
    metrics = MetricsLog(plan.work_dir / METRICS_FILE)
    callback = RunProgress(plan.work_dir, config, None, metrics, log_interval(config))
    trainer = build_trainer(config, plan.work_dir, [callback], progress)
    if trainer.is_global_zero:
        # Rank 0 alone writes: under DDP the other ranks start while it trains into the same directory.
        plan.make_work_dir()
        if plan.resume_from is None:
            write_run_files(plan.work_dir, config, prepared.split, prepared.held_out_note)
        else:
            write_run_config(plan.work_dir, config)
        metrics.keep_until(Progress.of(plan.resume_from).step if plan.resume_from else 0)
    callback.val_batches = _validation_batches(prepared, config)
    loader = _training_loader(prepared, config, trainer)
    trainer.fit(module, train_dataloaders=loader, ckpt_path=plan.resume_from)
    trainer.save_checkpoint(plan.work_dir / CHECKPOINT_FILES["last"])
    # One line per rank, so a distributed run shows that every rank trained on the same database.
    log.info(
        "rank %d of %d: %d optimizer steps, retrieval database digest %s",
        trainer.global_rank,
        trainer.world_size,
        trainer.global_step,
        retrieval_digest(module),
    )
    best = plan.work_dir / CHECKPOINT_FILES["best"]
    calibration_started = time.perf_counter()
    if trainer.is_global_zero and _calibrates(config) and callback.best_step >= 0 and best.is_file():
        calibrate_residual(module, callback.val_batches, best)
    calibration_seconds = time.perf_counter() - calibration_started
    if trainer.is_global_zero:
        replace_dir(plan.work_dir, run_dir)
    return _summary(
        run_dir,
        config.model.arm,
        trainer.global_step,
        callback.stopped,
        callback.best_step,
        callback.best_selection_rate,
        (callback.validation_seconds, calibration_seconds),
    )


def _calibrates(config: Config) -> bool:
    return config.train.calibrate_residual and config.model.output_residual == "expression"


def retrieval_digest(module: PerturbationLightningModule) -> str:
    """SHA-256 over the retriever's buffers (neighbour tables, database, memory); "none" for ST."""
    retriever = module.model.retriever
    if retriever is None:
        return "none"
    digest = hashlib.sha256()
    for name, buffer in sorted(retriever.named_buffers()):
        digest.update(name.encode())
        digest.update(buffer.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]
