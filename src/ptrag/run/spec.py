"""The ModelSpec: the facts about the data that fix a model's shapes, stored once in every checkpoint."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from ptrag.data.normalisation import Normalisation
from ptrag.embeddings.types import GeneEmbeddings
from ptrag.keys import BUNDLED_SOURCE
from ptrag.retrieval import ResponseMemory, RetrievalDatabase
from ptrag.run.knockdown import KnockdownPrior
from ptrag.run.state_gains import StateGains

__all__ = ["ModelSpec"]


def _strings(values: Sequence[str]) -> list[str]:
    return [str(value) for value in values]  # numpy str_ would need numpy's unpickler


@dataclass(frozen=True)
class ModelSpec:
    """Ordered genes, perturbation vocabulary (+ embeddings), cell types, batches and databases.

    ``normalisation`` says how the training data became log1p values, so that new data is read the
    same way (``ptrag.data.loading.load_dataset(..., genes=spec.genes, normalisation=...)``). The
    retrieval database is the training perturbations' rows of the vocabulary; the response
    memory holds observed training shifts; ``knockdown`` how far training knockdowns lowered their
    own target (every arm; None in runs trained before it existed); ``state_gains`` how each
    gene's response differs between basal-state strata (None likewise). Everything a retriever
    precomputes from these (neighbour tables, candidate rows) is derived again whenever a model is
    built, never stored.
    """

    genes: tuple[str, ...]
    vocabulary: tuple[str, ...]
    vocabulary_embeddings: np.ndarray  # (V, D) float32
    cell_types: tuple[str, ...]
    batches: tuple[str, ...]
    database: RetrievalDatabase
    memory: ResponseMemory | None = None
    embedding_source: str = BUNDLED_SOURCE
    normalisation: Normalisation = field(default_factory=Normalisation)
    knockdown: KnockdownPrior | None = None
    # Gene priors built from the training data (ptrag.embeddings.priors), kept so that genes the run
    # has never seen are embedded the way its vocabulary was.
    prior_tables: Mapping[str, GeneEmbeddings] = field(default_factory=dict)
    state_gains: StateGains | None = None

    @classmethod
    def build(
        cls,
        genes: Sequence[str],
        vocabulary: Sequence[str],
        vocabulary_embeddings: np.ndarray,
        cell_types: Sequence[str],
        batches: Sequence[str],
        database_perturbations: Sequence[str],
        memory: ResponseMemory | None = None,
        embedding_source: str = BUNDLED_SOURCE,
        normalisation: Normalisation = Normalisation(),  # noqa: B008  (frozen dataclass)
        knockdown: KnockdownPrior | None = None,
        prior_tables: Mapping[str, GeneEmbeddings] | None = None,
        state_gains: StateGains | None = None,
    ) -> ModelSpec:
        """A spec whose database holds ``database_perturbations``' rows of the vocabulary."""
        row = {name: i for i, name in enumerate(vocabulary)}
        embeddings = np.asarray(vocabulary_embeddings, dtype=np.float32)
        database = RetrievalDatabase.build(
            list(database_perturbations), embeddings[[row[p] for p in database_perturbations]]
        )
        return cls(
            tuple(genes),
            tuple(vocabulary),
            embeddings,
            tuple(cell_types),
            tuple(batches),
            database,
            memory,
            embedding_source,
            normalisation,
            knockdown,
            dict(prior_tables or {}),
            state_gains,
        )

    def vocabulary_index(self, names: Sequence[str]) -> np.ndarray:
        lookup = {name: i for i, name in enumerate(self.vocabulary)}
        return np.array([lookup[name] for name in names], dtype=np.int64)

    def extended(self, names: Sequence[str], embeddings: np.ndarray) -> ModelSpec:
        """A spec whose vocabulary also holds ``names`` (perturbations never seen in training)."""
        new = [(n, e) for n, e in zip(names, embeddings, strict=True) if n not in set(self.vocabulary)]
        if not new:
            return self
        added_names, added = zip(*new, strict=True)
        return replace(
            self,
            vocabulary=self.vocabulary + tuple(added_names),
            vocabulary_embeddings=np.vstack([self.vocabulary_embeddings, np.stack(added)]).astype(np.float32),
        )

    def with_cell_types(self, names: Sequence[str]) -> ModelSpec:
        """A spec that also knows ``names`` (cell types never seen in training).

        A new cell type has no response-memory rows, so the memory arm retrieves for it only the
        query perturbation measured in the training cell types, never neighbours "in" the new type.
        """
        new = [name for name in dict.fromkeys(names) if name not in self.cell_types]
        return replace(self, cell_types=self.cell_types + tuple(new)) if new else self

    def to_state(self) -> dict[str, Any]:
        """Plain strings and tensors only, so a checkpoint loads with ``torch.load(weights_only=True)``."""
        state: dict[str, Any] = {
            "genes": _strings(self.genes),
            "vocabulary": _strings(self.vocabulary),
            "vocabulary_embeddings": torch.from_numpy(self.vocabulary_embeddings),
            "cell_types": _strings(self.cell_types),
            "batches": _strings(self.batches),
            "database_perturbations": _strings(self.database.perturbations),
            "embedding_source": str(self.embedding_source),
            "normalisation": self.normalisation.to_dict(),
        }
        if self.memory is not None:
            state["memory"] = {
                "perturbations": _strings(self.memory.perturbations),
                "cell_types": _strings(self.memory.cell_types),
                "shifts": torch.from_numpy(self.memory.shifts),
                "noise": torch.from_numpy(self.memory.noise),
                "counts": torch.from_numpy(self.memory.counts),
            }
        if self.knockdown is not None:
            state["knockdown"] = self.knockdown.to_state()
        if self.state_gains is not None:
            state["state_gains"] = self.state_gains.to_state()
        if self.prior_tables:
            state["prior_tables"] = {
                name: {"symbols": _strings(table.symbols), "matrix": torch.from_numpy(table.matrix)}
                for name, table in self.prior_tables.items()
            }
        return state

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> ModelSpec:
        memory = None
        if state.get("memory") is not None:
            m = state["memory"]
            memory = ResponseMemory(
                tuple(m["perturbations"]),
                tuple(m["cell_types"]),
                m["shifts"].numpy(),
                m["noise"].numpy(),
                m["counts"].numpy(),
            )
        return cls.build(
            genes=state["genes"],
            vocabulary=state["vocabulary"],
            vocabulary_embeddings=state["vocabulary_embeddings"].numpy(),
            cell_types=state["cell_types"],
            batches=state["batches"],
            database_perturbations=state["database_perturbations"],
            memory=memory,
            embedding_source=str(state.get("embedding_source", "")),
            normalisation=Normalisation.from_dict(state.get("normalisation", {})),
            knockdown=KnockdownPrior.from_state(state["knockdown"]) if state.get("knockdown") else None,
            prior_tables={
                name: GeneEmbeddings(tuple(table["symbols"]), table["matrix"].numpy(), source=name)
                for name, table in state.get("prior_tables", {}).items()
            },
            state_gains=StateGains.from_state(state["state_gains"]) if "state_gains" in state else None,
        )
