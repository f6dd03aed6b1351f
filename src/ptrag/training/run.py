"""Train a model into a run directory; resume an interrupted run."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import numpy as np
from lightning.pytorch.callbacks import ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger, Logger
from torch.utils.data import DataLoader

from ptrag.config import Config, save_config
from ptrag.data.dataset import PerturbationDataset
from ptrag.data.sets import SetSampler
from ptrag.data.splits import Split
from ptrag.errors import CheckpointError, OutputError
from ptrag.io import atomic_write_text, prepare_output_dir
from ptrag.training.batches import FixedBatches, ResumingStepSampler, SetTensorizer, TrainingSteps
from ptrag.training.checkpoints import AtomicCheckpointIO
from ptrag.training.module import PerturbationLightningModule
from ptrag.training.prepare import PreparedData, prepare
from ptrag.training.threads import configure_threads

log = logging.getLogger(__name__)

LAST_CHECKPOINT = "checkpoints/last.ckpt"


@dataclass
class TrainedRun:
    run_dir: Path
    module: PerturbationLightningModule
    prepared: PreparedData


def _write_run_files(run_dir: Path, config: Config, prepared: PreparedData) -> None:
    spec = prepared.spec
    save_config(config, run_dir / "config.toml")
    atomic_write_text(run_dir / "genes.txt", "\n".join(spec.genes) + "\n")
    vocabulary = {
        "vocabulary": list(spec.vocabulary),
        "database": list(spec.database.perturbations),
        "groups": {role: [list(g) for g in groups] for role, groups in prepared.groups.items()},
    }
    atomic_write_text(run_dir / "perturbations.json", json.dumps(vocabulary, indent=1))
    spec.database.save(run_dir / "retrieval.npz")
    if spec.memory is not None:
        spec.memory.save(run_dir / "memory.npz")
    embeddings = {
        "source": spec.embedding_source,
        "dim": int(spec.vocabulary_embeddings.shape[1]),
        "n_perturbations": len(spec.vocabulary),
    }
    atomic_write_text(run_dir / "embeddings.json", json.dumps(embeddings, indent=1))
    prepared.split.write(run_dir / "split.toml")


def _loggers(run_dir: Path, config: Config) -> list[Logger]:
    loggers: list[Logger] = [CSVLogger(save_dir=str(run_dir), name="", version="logs")]
    if config.train.tensorboard:
        from lightning.pytorch.loggers import TensorBoardLogger

        loggers.append(TensorBoardLogger(save_dir=str(run_dir), name="", version="tensorboard"))
    if config.train.wandb:
        from lightning.pytorch.loggers import WandbLogger

        loggers.append(WandbLogger(save_dir=str(run_dir)))
    return loggers


def build_trainer(config: Config, run_dir: Path, progress: bool = True) -> L.Trainer:
    t = config.train
    devices: int | str = int(t.devices) if t.devices.isdigit() else t.devices
    return L.Trainer(
        max_steps=t.max_steps,
        accelerator=t.accelerator,
        devices=devices,
        num_nodes=t.num_nodes,
        strategy=t.strategy,
        precision=t.precision,  # type: ignore[arg-type]
        gradient_clip_val=t.grad_clip,
        val_check_interval=min(t.val_every, t.max_steps),
        check_val_every_n_epoch=None,
        limit_val_batches=1.0,
        num_sanity_val_steps=0,
        logger=_loggers(run_dir, config),
        log_every_n_steps=max(1, min(50, t.max_steps // 20)),
        callbacks=[
            ModelCheckpoint(
                dirpath=run_dir / "checkpoints",
                filename="{step}",
                every_n_train_steps=t.checkpoint_every,
                save_last=True,
                save_top_k=1,
                monitor=None,
            ),
            *([TQDMProgressBar(refresh_rate=10)] if progress else []),
        ],
        enable_progress_bar=progress,
        enable_model_summary=False,
        use_distributed_sampler=False,
        deterministic=t.deterministic,
        plugins=[AtomicCheckpointIO()],
        default_root_dir=str(run_dir),
    )


def train(
    config: Config,
    dataset: PerturbationDataset,
    split: Split,
    run_dir: str | Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> TrainedRun:
    run_dir = Path(run_dir)
    configure_threads(config.train.num_threads)
    ckpt_path: str | None = None
    if resume:
        last = run_dir / LAST_CHECKPOINT
        if not last.is_file():
            raise CheckpointError(f"Cannot resume: {last} does not exist. Start the run without --resume.")
        ckpt_path = str(last)
    elif (run_dir / LAST_CHECKPOINT).exists() and not overwrite:
        # Checked before any work; safe on every DDP rank since last.ckpt appears only after training.
        raise OutputError(f"{run_dir} already holds a trained run. Pass --resume to continue or --overwrite.")
    L.seed_everything(config.train.seed, workers=True, verbose=False)
    prepared = prepare(dataset, split, config)
    module = PerturbationLightningModule(config, prepared.spec)
    trainer = build_trainer(config, run_dir, progress)
    if trainer.is_global_zero and not resume:
        # Rank 0 alone creates the run directory: under DDP the other ranks start after it has
        # written the run files (or beside it under srun) and must neither refuse nor delete them.
        prepare_output_dir(run_dir, overwrite=overwrite)
        _write_run_files(run_dir, config, prepared)
    tensorize = SetTensorizer(dataset, prepared.spec)
    t = config.train
    sampler = SetSampler(dataset, prepared.groups_for("train"), t.cell_set_len, t.seed)
    steps = TrainingSteps(sampler, tensorize, t.sets_per_batch, t.seed, trainer.global_rank, t.max_steps)
    train_loader = DataLoader(
        steps,
        batch_size=None,
        sampler=ResumingStepSampler(lambda: trainer.global_step, t.max_steps),
        num_workers=0,
    )
    val_groups = prepared.groups_for("val")
    val_loader = None
    if val_groups:
        val_sampler = SetSampler(dataset, val_groups, t.cell_set_len, t.seed)
        val_sets = val_sampler.fixed_sets()
        # A fixed, evenly spread subset keeps validation cheap and identical across evaluations.
        pick = np.linspace(0, len(val_sets) - 1, num=min(t.val_sets, len(val_sets))).round().astype(int)
        val_loader = DataLoader(
            FixedBatches([val_sets[i] for i in np.unique(pick)], tensorize, t.sets_per_batch),
            batch_size=None,
        )
    trainer.fit(module, train_dataloaders=train_loader, val_dataloaders=val_loader, ckpt_path=ckpt_path)
    trainer.save_checkpoint(run_dir / LAST_CHECKPOINT)
    # One line per rank, so a distributed run shows that every rank trained on the same database.
    log.info(
        "rank %d of %d: %d optimizer steps, retrieval database digest %s",
        trainer.global_rank,
        trainer.world_size,
        trainer.global_step,
        retrieval_digest(module),
    )
    if trainer.is_global_zero:
        _collect_metrics(run_dir)
    return TrainedRun(run_dir, module, prepared)


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


def _collect_metrics(run_dir: Path) -> None:
    """Keep a copy of the CSV log at the top of the run directory."""
    source = run_dir / "logs" / "metrics.csv"
    if source.exists():
        shutil.copyfile(source, run_dir / "metrics.csv")
