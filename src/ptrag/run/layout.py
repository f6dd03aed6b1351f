"""A run directory: the files it holds, each written once and read back by someone.

config.toml             the run's config; ``--resume`` reads it (and rewrites it for a new --steps)
split.toml              the split the run used, with any automatically held-out val groups;
                        ``predict`` reads it for --split, ``--resume`` for the groups
metrics.csv             one row per logged step (``ptrag.training.metrics``); ``--resume`` keeps it
checkpoints/last.ckpt   the training state at the last checkpoint step (``ptrag.run.checkpoint``)
checkpoints/best.ckpt   the weights with the lowest validation loss (prediction's default)
"""

from __future__ import annotations

from pathlib import Path

from ptrag.config import Config, read_saved_config, save_config
from ptrag.data.conditions import Group
from ptrag.data.splits import Split
from ptrag.errors import CheckpointError
from ptrag.io import atomic_write_text

__all__ = [
    "CONFIG_FILE",
    "METRICS_FILE",
    "SPLIT_FILE",
    "held_out_note",
    "read_run_config",
    "read_run_split",
    "write_run_config",
    "write_run_files",
]

CONFIG_FILE = "config.toml"
SPLIT_FILE = "split.toml"
METRICS_FILE = "metrics.csv"


def held_out_note(held_out: list[Group], n_train: int, fraction: float) -> str:
    return (
        f"The split has no val groups: {len(held_out)} of {n_train} training (cell type, perturbation) "
        f"groups (train.val_fraction = {fraction:g}) were held out for validation"
    )


def write_run_config(run_dir: Path, config: Config) -> None:
    """config.toml; a resumed run rewrites it when it changed a resumable key (e.g. max_steps)."""
    save_config(config, run_dir / CONFIG_FILE)


def write_run_files(run_dir: Path, config: Config, split: Split, note: str | None = None) -> None:
    """config.toml and split.toml (with ``note`` as a comment, e.g. on held-out val groups)."""
    write_run_config(run_dir, config)
    header = f"# ptrag: {note}; they are listed as val below.\n" if note else ""
    atomic_write_text(run_dir / SPLIT_FILE, header + split.to_toml())


def read_run_config(run_dir: Path) -> Config:
    path = run_dir / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(f"{path} is missing: {run_dir} is not a complete ptrag run directory.")
    return read_saved_config(path)


def read_run_split(run_dir: Path) -> Split:
    return Split.read(run_dir / SPLIT_FILE)
