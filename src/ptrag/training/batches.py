"""Batches of cell sets as tensors, indexed by training step so that resumed runs see the same data."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ptrag.data.sets import CellSet, SetSampler
from ptrag.run.tensors import SetTensorizer

__all__ = ["TrainingSteps", "choose_workers", "fixed_batches", "step_loader"]


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


# With an accelerator and train.num_workers = -1: this many worker processes per device at most.
MAX_AUTO_WORKERS = 4


def choose_workers(requested: int, device: torch.device, devices_per_node: int = 1) -> int:
    """DataLoader workers for ``train.num_workers`` (-1 = choose for the device).

    On a CPU the model's threads already use the cores, and a step waits for nothing but its own
    compute: workers only compete with it (0). With an accelerator, the host would otherwise gather
    and collate the next step's sets while the device waits: up to ``MAX_AUTO_WORKERS`` per device,
    leaving a core per device for the training process itself.
    """
    if requested >= 0:
        return requested
    if device.type == "cpu":
        return 0
    cores = os.cpu_count() or 1
    return max(1, min(MAX_AUTO_WORKERS, cores // max(devices_per_node, 1) - 1))


def step_loader(
    steps: TrainingSteps, start: Callable[[], int], workers: int, device: torch.device
) -> DataLoader:
    """The loader of training steps from ``start()`` on: in order, whatever the number of workers.

    Each step's batch depends only on (seed, rank, step), so workers change when a batch is built,
    never what it holds. With workers, batches are prefetched (two per worker); with a CUDA device they
    are pinned, so the copy to the device runs asynchronously. Workers are forked where the platform
    can (they then share the loaded expression matrix instead of receiving a copy).
    """
    context = None
    if workers > 0 and "fork" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("fork")
    return DataLoader(
        steps,
        batch_size=None,
        sampler=ResumingStepSampler(start, steps.steps),
        num_workers=workers,
        pin_memory=device.type == "cuda",
        multiprocessing_context=context,
        # Its own generator: creating the loader's iterator must not draw from torch's global one,
        # whose state a resumed run restores for the Gumbel noise.
        generator=torch.Generator(),
    )


def fixed_batches(
    sets: Sequence[CellSet], tensorize: SetTensorizer, sets_per_batch: int
) -> list[dict[str, torch.Tensor]]:
    """Pre-built evaluation batches of fixed sets, for validation."""
    return [tensorize(list(sets[i : i + sets_per_batch])) for i in range(0, len(sets), sets_per_batch)]
