"""Distributed training: two CPU processes (gloo) through Lightning DDP, launched by `ptrag train`."""

from __future__ import annotations

import hashlib
import re
import subprocess
from pathlib import Path

import numpy as np
import torch

from ptrag.data.sets import SetSampler
from ptrag.run.checkpoint import Checkpoint
from ptrag.run.tensors import SetTensorizer
from ptrag.training.batches import TrainingSteps
from ptrag.training.prepare import prepare

STEPS = 12
RANK_LINE = re.compile(r"rank (\d+) of (\d+): (\d+) optimizer steps, retrieval database digest (\w+)")


def _checkpoint_digest(checkpoint: Checkpoint) -> str:
    """The digest `ptrag.training.run.retrieval_digest` logs, of a model rebuilt from the checkpoint."""
    digest = hashlib.sha256()
    for name, buffer in sorted(checkpoint.model().retriever.named_buffers()):
        digest.update(name.encode())
        digest.update(buffer.contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def test_two_process_ddp_trains_on_both_ranks_with_one_database_and_one_checkpoint(
    tiny_screen: Path, tmp_path: Path, ptrag_cli
) -> None:
    run = tmp_path / "run"
    command = ptrag_cli(
        "train", str(tiny_screen / "data.h5ad"), "--split", str(tiny_screen / "split.toml"),
        "--out", str(run), "--arm", "ptrag", "--steps", str(STEPS),
        "--accelerator", "cpu", "--devices", "2", "--strategy", "ddp", "--no-progress",
        "--set", "model.hidden_dim=16", "--set", "model.n_layers=1", "--set", "model.n_heads=2",
        "--set", "retrieval.top_k=8", "--set", "train.cell_set_len=16", "--set", "train.num_threads=1",
        "--set", "train.val_every=6", "--set", "train.checkpoint_every=6",
    )  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=240, cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]

    # Both ranks trained: each logs its own line with the optimizer steps it took.
    ranks = {int(m[0]): m for m in RANK_LINE.findall(output)}
    assert sorted(ranks) == [0, 1], output[-3000:]
    assert all(int(world) == 2 and int(steps) == STEPS for _, world, steps, _ in ranks.values())

    # The retrieval database (neighbour tables + embeddings) is identical on both ranks, and the
    # checkpoint's spec rebuilds exactly it.
    digests = {digest for *_, digest in ranks.values()}
    assert len(digests) == 1
    checkpoint = Checkpoint.load(run, "last")
    assert checkpoint.step == STEPS
    assert _checkpoint_digest(checkpoint) in digests

    # Each checkpoint is written once: no rank- or version-suffixed copies, no leftover temporary
    # files or partial directory, one metrics log.
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    assert [p.name for p in run.rglob("metrics.csv")] == ["metrics.csv"]
    assert output.count("trained ptrag for") == 2  # each process finished the command


def test_each_rank_draws_different_training_batches(tiny_data, make_config) -> None:
    dataset, split = tiny_data
    config = make_config("ptrag")
    prepared = prepare(dataset, split, config)
    t = config.train
    sampler = SetSampler(dataset, prepared.groups_for("train"), t.cell_set_len, t.seed)
    tensorize = SetTensorizer(dataset, prepared.spec, config.model.anchor)
    rank0, rank1, rank0_again = (
        TrainingSteps(sampler, tensorize, t.sets_per_batch, t.seed, rank, 4)[2] for rank in (0, 1, 0)
    )
    assert not torch.equal(rank0["target"], rank1["target"])
    np.testing.assert_array_equal(rank0["target"].numpy(), rank0_again["target"].numpy())
