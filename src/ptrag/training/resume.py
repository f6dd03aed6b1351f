"""Where a training run writes, and what resuming an interrupted or finished run means.

A run trains in ``.NAME.partial`` beside its run directory and replaces ``NAME`` only when it has
finished, so a failure or a kill never touches an earlier run. ``--resume`` continues the partial
directory of an interrupted run, or extends a finished run to a larger ``--steps`` (in a partial
copy, again replacing it only at the end). The config comes from the run directory; options may
only repeat it, except the keys in :data:`RESUMABLE_KEYS`.
"""

from __future__ import annotations

import dataclasses
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ptrag.config import Config
from ptrag.data.dataset import PerturbationDataset
from ptrag.data.splits import Split
from ptrag.errors import CheckpointError, ConfigError, DataError, OutputError
from ptrag.io import check_output_dir, output_error
from ptrag.run.checkpoint import CHECKPOINT_FILES, Checkpoint, read_checkpoint
from ptrag.run.groups import with_validation_groups
from ptrag.run.layout import CONFIG_FILE, SPLIT_FILE, read_run_config, read_run_split
from ptrag.run.spec import ModelSpec
from ptrag.training.progress import STATE_KEY

__all__ = [
    "RESUMABLE_KEYS",
    "Plan",
    "Progress",
    "check_same_data",
    "plan_fresh",
    "plan_resume",
    "resumed_config",
    "resumed_split",
    "run_config_for_resume",
]

# Settings a resumed run may change: its length and where and how fast it runs.
RESUMABLE_KEYS = (
    "train.max_steps",
    "train.num_threads",
    "train.num_workers",
    "train.accelerator",
    "train.devices",
    "train.num_nodes",
    "train.strategy",
    "train.tensorboard",
    "train.wandb",
)


def partial_dir(run_dir: Path) -> Path:
    return run_dir.parent / f".{run_dir.name}.partial"


@dataclass(frozen=True)
class Progress:
    """How far a run got, from its last checkpoint."""

    step: int
    stopped: str  # "", "early" or "max_steps"
    best_step: int

    @classmethod
    def of(cls, checkpoint: Path) -> Progress:
        payload = read_checkpoint(checkpoint)
        state: dict[str, Any] = payload.get("callbacks", {}).get(STATE_KEY, {})
        return cls(
            int(payload.get("global_step", 0)), str(state.get("stopped", "")), int(state.get("best_step", -1))
        )


@dataclass(frozen=True)
class Plan:
    """What a training call will do; computing it changes no file (every DDP rank computes it)."""

    work_dir: Path  # where this run writes (a partial directory)
    resume_from: Path | None  # the training checkpoint to continue, if any
    config: Config
    source: Path | None = None  # the run directory (or partial one) a resume continues
    finished: str | None = None  # set when there is nothing left to train: says why
    clear_stale: bool = False  # remove an old partial directory first
    copy_from: Path | None = None  # start from a copy of this finished run

    def make_work_dir(self) -> None:
        """Rank 0 only: clear or fill the partial directory."""
        try:
            if self.clear_stale and self.work_dir.exists():
                shutil.rmtree(self.work_dir)
            if self.copy_from is not None:
                # Copied under another name and renamed, so other ranks never see half a copy.
                copying = self.work_dir.with_name(self.work_dir.name + ".copying")
                shutil.rmtree(copying, ignore_errors=True)
                shutil.copytree(self.copy_from, copying)
                copying.rename(self.work_dir)
            self.work_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise output_error(exc, self.work_dir) from exc


def _flat(config: Config) -> dict[str, object]:
    return {
        f"{section}.{key}": value
        for section, values in dataclasses.asdict(config).items()
        for key, value in values.items()
    }


def resumed_config(saved: Config, requested: Config, run_dir: Path) -> Config:
    """``requested`` if it differs from the run's saved config only in :data:`RESUMABLE_KEYS`."""
    old, new = _flat(saved), _flat(requested)
    conflicts = [key for key in old if old[key] != new[key] and key not in RESUMABLE_KEYS]
    if conflicts:
        shown = "; ".join(f"{key} = {new[key]!r}, but the run has {old[key]!r}" for key in conflicts[:3])
        more = f" (and {len(conflicts) - 3} more)" if len(conflicts) > 3 else ""
        raise ConfigError(
            f"Cannot resume {run_dir} with another config: {shown}{more} ({run_dir / CONFIG_FILE}). "
            f"A resumed run keeps its config; only {', '.join(RESUMABLE_KEYS)} may change "
            "(e.g. --steps). Drop the other options, or start a new run with --overwrite."
        )
    return requested


def _refuse_existing(run_dir: Path, partial: Path) -> None:
    if (partial / CHECKPOINT_FILES["last"]).is_file():
        step = Progress.of(partial / CHECKPOINT_FILES["last"]).step
        raise OutputError(
            f"An interrupted run of {run_dir} is in {partial} (last checkpoint at step {step}). "
            "Pass --resume to continue it, or --overwrite to start again."
        )
    if (run_dir / CHECKPOINT_FILES["last"]).is_file():
        raise OutputError(f"{run_dir} already holds a trained run. Pass --resume to continue or --overwrite.")
    check_output_dir(run_dir, overwrite=False)


def plan_fresh(run_dir: Path, config: Config, overwrite: bool) -> Plan:
    """A new run: refuse to replace an existing one without ``overwrite``; clear a stale partial one."""
    partial = partial_dir(run_dir)
    if not overwrite:
        _refuse_existing(run_dir, partial)
    check_output_dir(run_dir, overwrite=True)
    return Plan(partial, None, config, clear_stale=True)


def _resumable(run_dir: Path) -> Path:
    """The directory a resume continues: the interrupted partial run, else the run itself."""
    partial = partial_dir(run_dir)
    source = partial if partial.is_dir() else run_dir
    checkpoint = source / CHECKPOINT_FILES["last"]
    if not checkpoint.is_file():
        if source == partial:
            where = f"The interrupted run in {partial} has no checkpoint yet"
        else:
            where = f"Cannot resume: {checkpoint} does not exist"
        raise CheckpointError(f"{where}. Start the run without --resume (with --overwrite to replace it).")
    return source


def run_config_for_resume(run_dir: Path) -> Config:
    """The config of the run ``--resume`` would continue."""
    return read_run_config(_resumable(run_dir))


def plan_resume(run_dir: Path, requested: Config | None) -> Plan:
    """Continue the partial run, or extend a finished one; ``requested=None`` keeps the run's config."""
    partial = partial_dir(run_dir)
    source = _resumable(run_dir)
    checkpoint = source / CHECKPOINT_FILES["last"]
    saved = read_run_config(source)
    config = resumed_config(saved, requested or saved, run_dir)
    progress = Progress.of(checkpoint)
    if progress.stopped == "early":
        message = (
            f"{run_dir} stopped early at step {progress.step} (no lower validation loss for "
            f"{config.train.patience} validations; best at step {progress.best_step}); nothing to resume."
        )
        return Plan(source, checkpoint, config, source, finished=message)
    if progress.step >= config.train.max_steps:
        message = (
            f"{run_dir} already finished: step {progress.step} of {config.train.max_steps}; nothing to "
            f"resume (pass --steps N with N > {progress.step} to train longer)."
        )
        return Plan(source, checkpoint, config, source, finished=message)
    # A finished run is extended in a copy; the run itself stays until the copy has finished.
    copy_from = run_dir if source == run_dir else None
    return Plan(partial, partial / CHECKPOINT_FILES["last"], config, source, copy_from=copy_from)


def resumed_split(plan: Plan, given: Split | None, dataset: PerturbationDataset) -> Split:
    """The run's own split; a ``given`` one must be the same (after any automatic val hold-out)."""
    assert plan.source is not None
    saved = read_run_split(plan.source)
    if (
        given is not None
        and with_validation_groups(given, dataset, plan.config.train.val_fraction)[0] != saved
    ):
        raise ConfigError(
            f"--split differs from the split of the run being resumed ({plan.source / SPLIT_FILE}); "
            "a resumed run keeps its split. Leave --split out."
        )
    return saved


def check_same_data(plan: Plan, spec: ModelSpec, run_dir: Path) -> None:
    """A resumed run must see the data it was trained on: same genes, vocabulary, lines, batches."""
    assert plan.source is not None  # the run (or partial run) being resumed: its checkpoint exists
    saved = Checkpoint.load(plan.source, "last").spec
    facts = {
        "genes": (saved.genes, spec.genes),
        "perturbations": (saved.vocabulary, spec.vocabulary),
        "cell types": (saved.cell_types, spec.cell_types),
        "batches": (saved.batches, spec.batches),
        "training perturbations": (saved.database.perturbations, spec.database.perturbations),
    }
    differing = [name for name, (before, now) in facts.items() if before != now]
    if differing:
        raise DataError(
            f"The data given to --resume are not the data {run_dir} was trained on: its "
            f"{', '.join(differing)} differ. Resume with the run's own data, or start a new run "
            "with --overwrite."
        )
