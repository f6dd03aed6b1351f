"""A tiny simulated screen for the run-package tests (one per session)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from ptrag.simulation import simulate

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("run_pkg") / "screen"
    simulate("tiny", seed=0, out_dir=out)
    return out


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
