"""Settings and the session's tiny screen for the run-package tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny(tiny_screen: Path) -> Path:
    return tiny_screen


SMALL = (
    "model.hidden_dim=16",
    "model.n_layers=1",
    "model.n_heads=2",
    "retrieval.top_k=8",
    "train.max_steps=10",
    "train.sets_per_batch=4",
    "train.cell_set_len=16",
    "train.val_every=5",
    "train.num_threads=1",
)
