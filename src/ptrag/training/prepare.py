"""From a dataset, a split and a config to everything training needs: groups, vocabulary, databases."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ptrag.config import Config
from ptrag.data.dataset import BATCH, CELL_TYPE, PERTURBATION, PerturbationDataset
from ptrag.data.splits import Split
from ptrag.embeddings import load_embeddings, resolve_genes
from ptrag.errors import DataError
from ptrag.models.build import ModelSpec
from ptrag.retrieval import ResponseMemory, RetrievalDatabase

log = logging.getLogger(__name__)

Group = tuple[str, str]  # (cell type, perturbation)


@dataclass
class PreparedData:
    dataset: PerturbationDataset
    split: Split
    spec: ModelSpec
    roles: np.ndarray  # per cell: "train" | "val" | "test" | "control"
    groups: dict[str, list[Group]]  # role → sorted (cell type, perturbation) groups with cells

    def groups_for(self, role: str) -> list[Group]:
        return self.groups.get(role, [])


def _groups_by_role(
    dataset: PerturbationDataset, roles: np.ndarray, vocabulary: set[str]
) -> dict[str, list[Group]]:
    frame = dataset.obs[[CELL_TYPE, PERTURBATION]].astype(str).assign(role=roles)
    frame = frame[(frame["role"] != "control") & frame[PERTURBATION].isin(vocabulary)]
    unique = frame.drop_duplicates()
    return {
        role: sorted(zip(part[CELL_TYPE], part[PERTURBATION], strict=True))
        for role, part in unique.groupby("role", sort=True)
    }


def resolve_vocabulary(names: Sequence[str], config: Config) -> tuple[list[str], np.ndarray, str]:
    """Embeddings for ``names`` under the configured source and missing-gene policy."""
    embeddings = load_embeddings(config.embedding.source)
    resolution = resolve_genes(embeddings, list(names), policy=config.embedding.missing)
    return list(resolution.genes), np.asarray(resolution.matrix, dtype=np.float32), embeddings.source


def prepare(dataset: PerturbationDataset, split: Split, config: Config) -> PreparedData:
    split.validate(dataset)
    roles = split.roles(dataset)
    vocabulary, vocab_embeddings, source = resolve_vocabulary(dataset.perturbations(), config)
    groups = _groups_by_role(dataset, roles, set(vocabulary))
    if not groups.get("train"):
        raise DataError("The split leaves no training perturbations with cells; check the split file.")
    # The database holds training perturbations only (any cell type): no held-out gene can be retrieved.
    train_perturbations = sorted({p for _, p in groups["train"]})
    row = {name: i for i, name in enumerate(vocabulary)}
    database = RetrievalDatabase.build(
        train_perturbations, vocab_embeddings[[row[p] for p in train_perturbations]]
    )
    memory = None
    if config.model.arm == "memory":
        train_mask = roles == "train"
        memory = ResponseMemory.from_training_cells(dataset, train_mask)
        keep = np.isin(np.array(memory.perturbations), train_perturbations)
        memory = ResponseMemory(
            tuple(np.array(memory.perturbations)[keep]),
            tuple(np.array(memory.cell_types)[keep]),
            memory.shifts[keep],
        )
    spec = ModelSpec(
        genes=tuple(dataset.genes),
        vocabulary=tuple(vocabulary),
        vocabulary_embeddings=vocab_embeddings,
        cell_types=tuple(dataset.cell_types),
        batches=tuple(str(b) for b in dataset.obs[BATCH].cat.categories),
        database=database,
        memory=memory,
        embedding_source=source,
    )
    log.info(
        "prepared %d train / %d val / %d test groups; database of %d training perturbations",
        len(groups.get("train", [])),
        len(groups.get("val", [])),
        len(groups.get("test", [])),
        len(database),
    )
    return PreparedData(dataset, split, spec, roles, groups)
