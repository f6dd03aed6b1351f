"""The training data loader: worker processes change when a batch is built, never what it holds."""

from __future__ import annotations

import os

import torch

from ptrag.data.sets import SetSampler
from ptrag.run.checkpoint import read_checkpoint
from ptrag.run.tensors import SetTensorizer
from ptrag.training.batches import MAX_AUTO_WORKERS, TrainingSteps, choose_workers, step_loader
from ptrag.training.prepare import prepare
from ptrag.training.run import train


class StepsWithPid(TrainingSteps):
    """Training steps that also record which process built each batch."""

    def __getitem__(self, step: int) -> dict[str, torch.Tensor]:
        return super().__getitem__(step) | {"pid": torch.tensor(os.getpid())}


def test_workers_by_device() -> None:
    assert choose_workers(-1, torch.device("cpu")) == 0
    assert 1 <= choose_workers(-1, torch.device("cuda", 0)) <= MAX_AUTO_WORKERS
    assert choose_workers(-1, torch.device("cuda", 0), devices_per_node=10_000) == 1
    assert choose_workers(3, torch.device("cpu")) == 3
    assert choose_workers(0, torch.device("cuda", 0)) == 0


def test_workers_build_the_same_batches_in_the_same_order_from_any_start(tiny_data, make_config) -> None:
    dataset, split = tiny_data
    config = make_config("ptrag")
    t = config.train
    prepared = prepare(dataset, split, config)
    sampler = SetSampler(dataset, prepared.groups_for("train"), t.cell_set_len, t.seed)
    tensorize = SetTensorizer(dataset, prepared.spec, config.model.anchor)
    steps = StepsWithPid(sampler, tensorize, t.sets_per_batch, t.seed, 0, 9)
    cpu = torch.device("cpu")
    direct = list(step_loader(steps, lambda: 3, 0, cpu))
    forked = list(step_loader(steps, lambda: 3, 2, cpu))
    assert len(direct) == len(forked) == 6  # steps 3..8: a resumed run continues the sequence
    for plain, parallel in zip(direct, forked, strict=True):
        assert int(plain.pop("pid")) == os.getpid() and int(parallel.pop("pid")) != os.getpid()
        assert plain.keys() == parallel.keys()
        for key, value in plain.items():
            assert torch.equal(value, parallel[key]), key
    assert not torch.equal(direct[0]["control"], direct[1]["control"])


def test_training_with_workers_equals_training_without(tiny_data, make_config, tmp_path) -> None:
    dataset, split = tiny_data
    runs = {}
    for workers in (0, 2):
        config = make_config("memory", "train.max_steps=12", f"train.num_workers={workers}")
        train(config, dataset, split, tmp_path / str(workers), progress=False)
        runs[workers] = read_checkpoint(tmp_path / str(workers) / "checkpoints" / "last.ckpt")["state_dict"]
    assert runs[0].keys() == runs[2].keys()
    for key, value in runs[0].items():
        assert torch.equal(value, runs[2][key]), key
