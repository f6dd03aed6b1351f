"""Build a model from a config and a ModelSpec, the facts about the data that fix its shapes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from ptrag.config import Config
from ptrag.models.generator import STGenerator
from ptrag.models.model import PerturbationModel
from ptrag.models.retriever import Retriever
from ptrag.retrieval import ResponseMemory, RetrievalDatabase

# Buffers recomputed from the spec whenever the vocabulary changes; never copied between vocabularies.
_DERIVED_PREFIXES = ("retriever.",)
_VOCABULARY_ROWS = ("generator.pert_encoder.gene_embeddings", "generator.pert_encoder.table.weight")


@dataclass(frozen=True)
class ModelSpec:
    """Ordered genes, perturbation vocabulary (+ embeddings), cell types, batches and databases."""

    genes: tuple[str, ...]
    vocabulary: tuple[str, ...]
    vocabulary_embeddings: np.ndarray  # (V, D) float32
    cell_types: tuple[str, ...]
    batches: tuple[str, ...]
    database: RetrievalDatabase
    memory: ResponseMemory | None = None
    embedding_source: str = "bundled"

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

    def to_state(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "genes": list(self.genes),
            "vocabulary": list(self.vocabulary),
            "vocabulary_embeddings": torch.from_numpy(self.vocabulary_embeddings),
            "cell_types": list(self.cell_types),
            "batches": list(self.batches),
            "database_perturbations": list(self.database.perturbations),
            "database_embeddings": torch.from_numpy(self.database.embeddings),
            "embedding_source": self.embedding_source,
        }
        if self.memory is not None:
            state["memory"] = {
                "perturbations": list(self.memory.perturbations),
                "cell_types": list(self.memory.cell_types),
                "shifts": torch.from_numpy(self.memory.shifts),
            }
        return state

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> ModelSpec:
        memory = None
        if state.get("memory") is not None:
            m = state["memory"]
            memory = ResponseMemory(tuple(m["perturbations"]), tuple(m["cell_types"]), m["shifts"].numpy())
        return cls(
            genes=tuple(state["genes"]),
            vocabulary=tuple(state["vocabulary"]),
            vocabulary_embeddings=state["vocabulary_embeddings"].numpy(),
            cell_types=tuple(state["cell_types"]),
            batches=tuple(state["batches"]),
            database=RetrievalDatabase(
                tuple(state["database_perturbations"]), state["database_embeddings"].numpy()
            ),
            memory=memory,
            embedding_source=str(state.get("embedding_source", "")),
        )


def build_model(config: Config, spec: ModelSpec) -> PerturbationModel:
    m = config.model
    generator = STGenerator(
        n_genes=len(spec.genes),
        gene_embeddings=torch.from_numpy(spec.vocabulary_embeddings),
        n_batches=len(spec.batches),
        hidden_dim=m.hidden_dim,
        n_layers=m.n_layers,
        n_heads=m.n_heads,
        ff_mult=m.ff_mult,
        dropout=m.dropout,
        encoder_layers=m.encoder_layers,
        pert_encoding=m.pert_encoding,
        use_batch=m.use_batch,
        output_residual=m.output_residual,
    )
    retriever = None
    if m.arm != "st":
        retriever = Retriever(
            spec.database,
            spec.vocabulary,
            spec.vocabulary_embeddings,
            config.retrieval.top_k,
            memory=spec.memory if m.arm == "memory" else None,
            cell_types=spec.cell_types,
        )
    return PerturbationModel(config, generator, retriever, len(spec.genes))


def load_weights(model: PerturbationModel, state_dict: Mapping[str, torch.Tensor]) -> None:
    """Load trained weights into a model whose vocabulary may be larger than the trained one."""
    own = model.state_dict()
    for key, value in state_dict.items():
        if key.startswith(_DERIVED_PREFIXES) or key not in own:
            continue
        target = own[key]
        if key in _VOCABULARY_ROWS and target.shape[0] >= value.shape[0]:
            target[: value.shape[0]] = value
        elif target.shape == value.shape:
            target.copy_(value)
        else:
            raise ValueError(
                f"parameter {key}: checkpoint shape {tuple(value.shape)} != {tuple(target.shape)}"
            )
    model.load_state_dict(own)
