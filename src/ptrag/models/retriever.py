"""Candidate lookup inside the model: precomputed neighbour tables held as buffers.

While the gene embeddings are fixed, N(p) never changes, so the whole neighbour table is computed
once (vectorised, self excluded by index) and a training step only gathers rows from it. The tables
are non-persistent buffers: they move to the model's device, but checkpoints store only the spec
they are derived from (``ptrag.run.spec``), and every build (each distributed rank, each
prediction) derives the same tables from it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ptrag.retrieval import ResponseMemory, RetrievalDatabase, l2_normalise

__all__ = ["Candidates", "Retriever"]

# Neighbours ranked for the response memory: wider than K because only those measured in the
# query's cell type count.
MEMORY_RANKING_FACTOR = 4


@dataclass
class Candidates:
    index: torch.Tensor  # (B, K) database rows (or memory rows for the memory arm)
    embedding: torch.Tensor  # (B, K, D)
    cosine: torch.Tensor  # (B, K)
    valid: torch.Tensor  # (B, K) bool
    shift: torch.Tensor | None = None  # (B, K, G) observed mean shifts (memory arm)
    same_perturbation: torch.Tensor | None = None  # (B, K) bool (memory arm)
    noise: torch.Tensor | None = None  # (B, K, G) squared standard errors of the shifts (memory arm)
    database_row: torch.Tensor | None = None  # (B, K) the row of ``embedding`` in the database


def _tables(
    database: RetrievalDatabase, names: Sequence[str], embeddings: np.ndarray, k: int, shuffled: bool
) -> dict[str, torch.Tensor]:
    found = database.neighbours(names, embeddings, k, shuffled=shuffled)
    return {
        "neighbour_index": torch.from_numpy(found.index),
        "neighbour_cosine": torch.from_numpy(found.cosine),
        "neighbour_valid": torch.from_numpy(found.valid),
    }


def _memory_tables(
    memory: ResponseMemory,
    database: RetrievalDatabase,
    names: Sequence[str],
    embeddings: np.ndarray,
    cell_types: Sequence[str],
    k: int,
    shuffled: bool,
) -> dict[str, torch.Tensor]:
    ranked = database.neighbours(names, embeddings, k * MEMORY_RANKING_FACTOR)
    ranked_names = [
        [database.perturbations[j] for j, ok in zip(row, ok_row, strict=True) if ok]
        for row, ok_row in zip(ranked.index, ranked.valid, strict=True)
    ]
    v, c = len(names), len(cell_types)
    queries_p = [p for p in names for _ in cell_types]
    queries_c = [ct for _ in names for ct in cell_types]
    ranked_rep = [r for r in ranked_names for _ in cell_types]
    found = memory.candidates(queries_p, queries_c, ranked_rep, k, shuffled=shuffled)
    # Cosine of each query with each candidate row's perturbation (embeddings are L2-normalised).
    rows_db = database.row_of(memory.perturbations)[found.rows]
    queries = l2_normalise(np.asarray(embeddings, dtype=np.float32))
    query_rows = np.repeat(np.arange(v), c)
    cosine = np.einsum("qkd,qd->qk", database.embeddings[rows_db], queries[query_rows])
    return {
        "memory_index": torch.from_numpy(found.rows.reshape(v, c, k)),
        "memory_valid": torch.from_numpy(found.valid.reshape(v, c, k)),
        "memory_same": torch.from_numpy(found.same_perturbation.reshape(v, c, k)),
        "memory_cosine": torch.from_numpy(
            np.where(found.valid, cosine, 0.0).astype(np.float32).reshape(v, c, k)
        ),
    }


def _gather_rows(table: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """``table[rows]`` for (B, K) ``rows`` of a (R, G) table; index_select is faster on a CPU."""
    return table.index_select(0, rows.reshape(-1)).view(*rows.shape, table.shape[1])


class Retriever(nn.Module):
    """Stage 1 for a fixed perturbation vocabulary, and optionally the response memory."""

    def __init__(
        self,
        database: RetrievalDatabase,
        vocabulary: Sequence[str],
        vocabulary_embeddings: np.ndarray,
        top_k: int,
        memory: ResponseMemory | None = None,
        cell_types: Sequence[str] = (),
        candidates: str = "nearest",
    ) -> None:
        super().__init__()
        shuffled = candidates == "shuffled"
        self.database = database
        self.memory = memory
        self.cell_types = tuple(cell_types)
        self.top_k = top_k
        self.register_buffer(
            "database_embeddings", torch.from_numpy(database.embeddings.copy()), persistent=False
        )
        for name, value in _tables(database, vocabulary, vocabulary_embeddings, top_k, shuffled).items():
            self.register_buffer(name, value, persistent=False)
        if memory is not None:
            memory_rows_vocab = database.row_of(memory.perturbations)
            if (memory_rows_vocab < 0).any():
                raise ValueError("every response-memory perturbation must be in the training database")
            self.register_buffer("memory_shifts", torch.from_numpy(memory.shifts.copy()), persistent=False)
            self.register_buffer("memory_noise", torch.from_numpy(memory.noise.copy()), persistent=False)
            self.register_buffer(
                "memory_database_row", torch.from_numpy(memory_rows_vocab), persistent=False
            )
            tables = _memory_tables(
                memory, database, vocabulary, vocabulary_embeddings, self.cell_types, top_k, shuffled
            )
            for name, value in tables.items():
                self.register_buffer(name, value, persistent=False)

    def forward(self, pert_index: torch.Tensor, cell_type_index: torch.Tensor) -> Candidates:
        if self.memory is not None:
            rows = self.memory_index[pert_index, cell_type_index]
            valid = self.memory_valid[pert_index, cell_type_index]
            database_row = self.memory_database_row[rows]
            return Candidates(
                index=rows,
                embedding=self.database_embeddings[database_row],
                cosine=self.memory_cosine[pert_index, cell_type_index],
                valid=valid,
                shift=_gather_rows(self.memory_shifts, rows),
                same_perturbation=self.memory_same[pert_index, cell_type_index],
                noise=_gather_rows(self.memory_noise, rows),
                database_row=database_row,
            )
        rows = self.neighbour_index[pert_index]
        return Candidates(
            index=rows,
            embedding=self.database_embeddings[rows],
            cosine=self.neighbour_cosine[pert_index],
            valid=self.neighbour_valid[pert_index],
            database_row=rows,
        )

    def candidate_names(self, rows: np.ndarray) -> list[list[str]]:
        names = (
            [self.memory.perturbations[r] + "@" + self.memory.cell_types[r] for r in range(len(self.memory))]
            if self.memory is not None
            else list(self.database.perturbations)
        )
        return [[names[r] for r in row] for row in rows]
