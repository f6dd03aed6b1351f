"""From a dataset, a split and a config to everything training needs: groups, vocabulary, databases.

Everything here runs before any output exists, so a split or config that cannot work (no training
groups, ``top_k`` larger than the database) is refused without leaving a half-made run directory.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from ptrag.config import Config, get_arm
from ptrag.data.conditions import Group
from ptrag.data.dataset import BATCH, PerturbationDataset
from ptrag.data.splits import Split
from ptrag.embeddings.priors import build_data_tables
from ptrag.errors import ConfigError, DataError
from ptrag.retrieval import ResponseMemory
from ptrag.run.groups import groups_by_role, with_validation_groups
from ptrag.run.knockdown import KnockdownPrior
from ptrag.run.layout import held_out_note
from ptrag.run.spec import ModelSpec
from ptrag.run.state_gains import StateGains
from ptrag.run.vocabulary import resolve_vocabulary

__all__ = ["PreparedData", "prepare"]

log = logging.getLogger(__name__)


@dataclass
class PreparedData:
    dataset: PerturbationDataset
    split: Split  # the split the run uses: the given one, plus any held-out val groups
    spec: ModelSpec
    groups: dict[str, list[Group]]  # role → sorted (cell type, perturbation) groups with cells
    held_out_note: str | None = None  # set when val groups were held out of the training groups
    # Basal-state stratum per cell (ptrag.data.strata.cell_strata), computed once when a loss needs it.
    strata: np.ndarray | None = None

    def groups_for(self, role: str) -> list[Group]:
        return self.groups.get(role, [])


def _training_memory(dataset: PerturbationDataset, split: Split, database: list[str]) -> ResponseMemory:
    memory = ResponseMemory.from_training_cells(dataset, split.roles(dataset) == "train")
    return memory.subset(np.flatnonzero(np.isin(np.array(memory.perturbations), database)))


def _check_top_k(config: Config, n_database: int) -> None:
    # A training perturbation never retrieves itself, so it has n_database - 1 candidates.
    available = n_database - 1
    if config.retrieval.top_k > available:
        raise ConfigError(
            f"retrieval.top_k = {config.retrieval.top_k}, but the retrieval database holds "
            f"{n_database} training perturbations, so a query can retrieve at most {available} "
            f"(never itself). Set --set retrieval.top_k={max(available, 1)} or lower, or train on "
            "more perturbations."
        )


def prepare(dataset: PerturbationDataset, split: Split, config: Config) -> PreparedData:
    split.validate(dataset)
    n_train_groups = len(split.groups(dataset, "train"))
    split, held_out = with_validation_groups(split, dataset, config.train.val_fraction)
    note = held_out_note(held_out, n_train_groups, config.train.val_fraction) if held_out else None
    # Data priors read control cells only: no held-out perturbed cell informs them.
    data_tables = build_data_tables(config.embedding.sources, dataset)
    resolved = resolve_vocabulary(dataset.perturbations(), config, data_tables)
    log.info("%s.", resolved.coverage_line())
    vocabulary = list(resolved.genes)
    groups = groups_by_role(dataset, split, vocabulary)
    if not groups["train"]:
        raise DataError("The split leaves no training perturbations with cells; check the split file.")
    # The database holds training perturbations only (any cell type): no held-out gene can be retrieved.
    database = sorted({p for _, p in groups["train"]})
    kind = get_arm(config.model.arm).kind
    if kind.retriever:
        _check_top_k(config, len(database))
    # Every arm: from the training groups only, so no held-out measurement informs its own target.
    knockdown = KnockdownPrior.from_training_groups(dataset, groups["train"])
    state_gains = StateGains.from_training_groups(dataset, groups["train"])
    spec = ModelSpec.build(
        genes=dataset.genes,
        vocabulary=vocabulary,
        vocabulary_embeddings=resolved.matrix,
        cell_types=dataset.cell_types,
        batches=[str(b) for b in dataset.obs[BATCH].cat.categories],
        database_perturbations=database,
        memory=_training_memory(dataset, split, database) if kind.memory else None,
        embedding_source=resolved.source,
        prior_tables=data_tables,
        normalisation=dataset.normalisation,
        knockdown=knockdown,
        state_gains=state_gains,
    )
    log.info("%s.", knockdown.describe())
    log.info("%s.", state_gains.describe())
    if note:
        log.info("%s.", note)
    log.info(
        "prepared %d train / %d val / %d test groups; database of %d training perturbations",
        len(groups["train"]),
        len(groups["val"]),
        len(groups["test"]),
        len(database),
    )
    return PreparedData(dataset, split, spec, groups, note)
