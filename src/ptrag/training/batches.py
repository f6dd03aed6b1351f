"""Batches of cell sets as tensors, indexed by training step so that resumed runs see the same data."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from ptrag.data.sets import CellSet, SetSampler
from ptrag.run.tensors import SetTensorizer


class TrainingSteps(Dataset):
    """Item t is the batch of step t, drawn from a generator seeded by (seed, rank, t)."""

    def __init__(
        self,
        sampler: SetSampler,
        tensorize: SetTensorizer,
        sets_per_batch: int,
        seed: int,
        rank: int,
        steps: int,
    ) -> None:
        self.sampler = sampler
        self.tensorize = tensorize
        self.sets_per_batch = sets_per_batch
        self.seed = seed
        self.rank = rank
        self.steps = steps

    def __len__(self) -> int:
        return self.steps

    def __getitem__(self, step: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, self.rank, step])
        return self.tensorize(self.sampler.sample(self.sets_per_batch, rng))


class ResumingStepSampler(Sampler[int]):
    """Yields steps from the trainer's current global step, so a resumed run continues the sequence."""

    def __init__(self, start: Callable[[], int], steps: int) -> None:
        self.start = start
        self.steps = steps

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.start(), self.steps))

    def __len__(self) -> int:
        return max(self.steps - self.start(), 0)


def fixed_batches(
    sets: Sequence[CellSet], tensorize: SetTensorizer, sets_per_batch: int
) -> list[dict[str, torch.Tensor]]:
    """Pre-built evaluation batches of fixed sets, for validation."""
    return [tensorize(list(sets[i : i + sets_per_batch])) for i in range(0, len(sets), sets_per_batch)]
