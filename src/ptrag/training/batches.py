"""Batches of cell sets as tensors, indexed by training step so that resumed runs see the same data."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from ptrag.data.dataset import PerturbationDataset
from ptrag.data.sets import CellSet, SetSampler, collate
from ptrag.models.build import ModelSpec


class SetTensorizer:
    """Turn cell sets into the tensors a PerturbationModel takes, with the spec's index maps."""

    def __init__(self, dataset: PerturbationDataset, spec: ModelSpec) -> None:
        self.dataset = dataset
        self.vocabulary = {name: i for i, name in enumerate(spec.vocabulary)}
        self.cell_types = {name: i for i, name in enumerate(spec.cell_types)}
        # Dataset batch codes → spec batch codes; unknown batches map to the reserved last row.
        spec_batches = {name: i for i, name in enumerate(spec.batches)}
        categories = [str(b) for b in dataset.obs["batch"].cat.categories]
        self.batch_map = np.array(
            [spec_batches.get(b, len(spec.batches)) for b in categories], dtype=np.int64
        )

    def __call__(self, sets: Sequence[CellSet]) -> dict[str, torch.Tensor]:
        arrays = collate(list(sets), self.dataset)
        return {
            "control": torch.from_numpy(arrays["control"]),
            "target": torch.from_numpy(arrays["target"]),
            "batch_codes": torch.from_numpy(self.batch_map[arrays["batch_codes"]]),
            "pert_index": torch.tensor(
                [self.vocabulary[p] for p in arrays["perturbation"]], dtype=torch.long
            ),
            "cell_type_index": torch.tensor([self.cell_types.get(c, 0) for c in arrays["cell_type"]]),
        }


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


class FixedBatches(Dataset):
    """Pre-built evaluation batches (fixed sets), for validation."""

    def __init__(self, sets: Sequence[CellSet], tensorize: SetTensorizer, sets_per_batch: int) -> None:
        self.chunks = [list(sets[i : i + sets_per_batch]) for i in range(0, len(sets), sets_per_batch)]
        self.tensorize = tensorize

    def __len__(self) -> int:
        return len(self.chunks)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return self.tensorize(self.chunks[index])
