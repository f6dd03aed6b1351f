from __future__ import annotations

import numpy as np
import pytest
import torch

from ptrag.retrieval import ResponseMemory, RetrievalDatabase
from ptrag.run.spec import ModelSpec

N_GENES = 24
VOCAB = 12
DIM = 8


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture
def spec() -> ModelSpec:
    rng = np.random.default_rng(0)
    names = tuple(f"P{i}" for i in range(VOCAB))
    embeddings = rng.normal(size=(VOCAB, DIM)).astype(np.float32)
    train = names[:9]  # P9..P11 are held out: never in the database
    database = RetrievalDatabase.build(train, embeddings[:9])
    memory = ResponseMemory(
        train * 2, ("a",) * 9 + ("b",) * 9, rng.normal(size=(18, N_GENES)).astype(np.float32)
    )
    return ModelSpec(
        genes=tuple(f"g{i}" for i in range(N_GENES)),
        vocabulary=names,
        vocabulary_embeddings=embeddings,
        cell_types=("a", "b"),
        batches=("b0", "b1"),
        database=database,
        memory=memory,
    )


def _make_batch(n_sets: int = 3, set_len: int = 5, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "control": torch.rand(n_sets, set_len, N_GENES, generator=g) * 3,
        "target": torch.rand(n_sets, set_len, N_GENES, generator=g) * 3 + 0.5,
        "pert_index": torch.randint(0, VOCAB, (n_sets,), generator=g),
        "cell_type_index": torch.randint(0, 2, (n_sets,), generator=g),
        "batch_codes": torch.randint(0, 2, (n_sets, set_len), generator=g),
    }


@pytest.fixture
def make_batch():
    return _make_batch
