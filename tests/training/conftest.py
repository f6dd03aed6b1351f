"""A tiny simulated screen and short training runs shared by the training and prediction tests."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from ptrag.config import Config, load_config
from ptrag.data.loading import load_dataset
from ptrag.data.splits import Split

# Short but real: enough steps for every arm to move away from the control cells.
TEST_OVERRIDES = (
    "model.hidden_dim=32",
    "model.n_layers=1",
    "model.n_heads=2",
    "retrieval.top_k=8",
    "train.max_steps=120",
    "train.lr=2e-3",
    "train.sets_per_batch=8",
    "train.cell_set_len=16",
    "train.val_every=60",
    "train.checkpoint_every=60",
    "train.num_threads=1",
)


def short_config(arm: str, *extra: str) -> Config:
    return load_config("cpu-small", [*TEST_OVERRIDES, f"model.arm={arm}", *extra])


@pytest.fixture
def make_config():
    """``make_config(arm, *overrides)``: the short test configuration."""
    return short_config


@pytest.fixture
def ptrag_cli():
    """``ptrag_cli(*args)``: the command line that runs ``ptrag`` with this interpreter."""
    return lambda *args: [sys.executable, "-m", "ptrag.cli.main", *args]


@pytest.fixture(scope="session")
def tiny_data(tiny_screen_digest: str, tiny_screen: Path):
    return load_dataset(tiny_screen / "data.h5ad", set_len=16), Split.read(tiny_screen / "split.toml")


@pytest.fixture(scope="session")
def trained_runs(tiny_data, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One short training run per arm, shared by every test that needs a trained model."""
    from ptrag.training.run import train

    dataset, split = tiny_data
    runs = {}
    root = tmp_path_factory.mktemp("runs")
    for arm in ("st", "vanilla_rag", "ptrag", "memory"):
        train(short_config(arm), dataset, split, root / arm, progress=False)
        runs[arm] = root / arm
    return runs
