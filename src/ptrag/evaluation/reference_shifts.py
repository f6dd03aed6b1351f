"""The shift references' per-condition shifts: computed once from training data, saved beside predictions.

``ptrag predict`` (split mode) and ``Model.predict(...).write`` write ``references.npz`` into the
output directory (:meth:`ReferenceShifts.write_into`); ``ptrag evaluate`` reads it back
(:meth:`ReferenceShifts.load`) and rebuilds each reference from the real file's control cells plus
these shifts. File contents
(``numpy.savez``, no pickles):

- ``genes`` (G,), ``cell_type`` (C,), ``perturbation`` (C,): the evaluated conditions and gene order;
- ``reference`` (R,), ``shift`` (R, C, G) float32: each reference's shift per condition (log1p);
- ``details``: JSON records (reference, cell_type, perturbation, source, detail) saying how each
  shift was made (neighbours and cosines, ridge λ, fallbacks);
- ``info``: JSON with the format version, the number of training groups and the gene priors.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from ptrag.config.schema import EmbeddingConfig, RetrievalConfig
from ptrag.data.dataset import PerturbationDataset
from ptrag.errors import DataError, format_list
from ptrag.evaluation.pair import rows_by_condition
from ptrag.evaluation.references import REFERENCE_REGISTRY, SHIFT_REFERENCES
from ptrag.evaluation.shifts import (
    ALL_PRIORS,
    DETAIL_COLUMNS,
    KNN_NEIGHBOURS,
    MIN_LINEAR_GROUPS,
    Condition,
    ShiftInputs,
    default_retrieval,
    train_mean_by_cell_type,
    training_memory,
)
from ptrag.keys import CELL_TYPE_COL, PERT_COL

__all__ = [
    "REFERENCE_FILE",
    "ReferenceShifts",
    "Vectors",
    "compute_reference_shifts",
    "prior_vectors",
    "reference_shifts_for_split",
]

log = logging.getLogger(__name__)

REFERENCE_FILE = "references.npz"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class ReferenceShifts:
    """Per-condition shifts of the shift references, in ``genes`` order."""

    genes: tuple[str, ...]
    conditions: tuple[Condition, ...]
    shifts: Mapping[str, NDArray[np.float32]]  # reference name → (C, G)
    details: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=list(DETAIL_COLUMNS)))
    info: Mapping[str, Any] = field(default_factory=dict)

    def lookup(self, name: str) -> Any:
        """(cell type, perturbation) → that reference's shift; a DataError for an unknown condition."""
        row = {condition: i for i, condition in enumerate(self.conditions)}
        matrix = self.shifts[name]

        def shift_for(cell_type: str, perturbation: str) -> NDArray[np.float32]:
            index = row.get((cell_type, perturbation))
            if index is None:
                raise DataError(
                    f"The {name} reference has no shift for {perturbation!r} in {cell_type!r}; "
                    f"{REFERENCE_FILE} was written for other conditions. Re-run ptrag predict."
                )
            return matrix[index]

        return shift_for

    def check_matches(self, real: Any, pert_col: str, celltype_col: str, control_label: str) -> None:
        """Raise a DataError unless ``real`` has these genes in this order and only these conditions."""
        genes = tuple(str(g) for g in real.var_names)
        if genes != self.genes:
            raise DataError(
                f"{REFERENCE_FILE} holds shifts over {len(self.genes)} genes that differ from the "
                f"{len(genes)} var_names of adata_real (or their order). Re-run ptrag predict."
            )
        obs = real.obs[[celltype_col, pert_col]].astype(str)
        present = set(map(tuple, obs[obs[pert_col] != control_label].drop_duplicates().to_numpy()))
        missing = sorted(present - set(self.conditions))
        if missing:
            raise DataError(
                f"{REFERENCE_FILE} has no shifts for the conditions {format_list(missing)} of adata_real. "
                "Re-run ptrag predict."
            )

    def save(self, path: str | Path) -> Path:
        from ptrag.io import atomic_path

        names = list(self.shifts)
        target = Path(path)
        with atomic_path(target) as tmp, open(tmp, "wb") as handle:
            np.savez(
                handle,
                genes=np.array(self.genes, dtype=str),
                cell_type=np.array([c for c, _ in self.conditions], dtype=str),
                perturbation=np.array([p for _, p in self.conditions], dtype=str),
                reference=np.array(names, dtype=str),
                shift=np.stack([self.shifts[n] for n in names]).astype(np.float32),
                details=np.array(self.details.to_json(orient="records")),
                info=np.array(json.dumps({"format": FORMAT_VERSION, **self.info})),
            )
        return target

    def write_into(self, directory: str | Path) -> Path:
        """Save as ``directory/references.npz``, where ``ptrag evaluate`` looks for it."""
        return self.save(Path(directory) / REFERENCE_FILE)

    @classmethod
    def load(cls, path: str | Path) -> ReferenceShifts:
        try:
            with np.load(path, allow_pickle=False) as data:
                names = [str(n) for n in data["reference"]]
                shift = data["shift"].astype(np.float32)
                cell_types = [str(c) for c in data["cell_type"]]
                conditions = tuple(zip(cell_types, map(str, data["perturbation"]), strict=True))
                details = pd.DataFrame(json.loads(str(data["details"])), columns=list(DETAIL_COLUMNS))
                info = json.loads(str(data["info"]))
                genes = tuple(str(g) for g in data["genes"])
        except (OSError, KeyError, ValueError) as exc:
            raise DataError(f"Cannot read {path} ({exc}). Re-run ptrag predict to rewrite it.") from exc
        if info.get("format") != FORMAT_VERSION:
            raise DataError(
                f"{path} has format {info.get('format')!r}, not {FORMAT_VERSION}. Re-run ptrag predict."
            )
        return cls(genes, conditions, {n: shift[i] for i, n in enumerate(names)}, details, info)


Vectors = dict[str, NDArray[np.float32]]  # perturbation → gene vector


def prior_vectors(
    names: Sequence[str],
    embedding: EmbeddingConfig,
    dataset: PerturbationDataset,
) -> tuple[Vectors, dict[str, Vectors]]:
    """The run's gene vectors of ``names`` (its ``embedding.sources``), and each registered prior's
    plus all of them combined (:data:`ALL_PRIORS`), for the linear references.

    Data priors read ``dataset``'s control cells only. Genes without a vector are left out (the
    references then fall back to train_mean for them, and say so) instead of failing: the
    references never stop an evaluation.
    """
    from ptrag.embeddings.priors import PRIOR_NAMES, build_data_tables, combine_priors, load_prior_tables

    tables = load_prior_tables(PRIOR_NAMES, embedding.source, build_data_tables(PRIOR_NAMES, dataset))

    def vectors(chosen: Sequence[str]) -> Vectors:
        combined = combine_priors(list(names), {p: tables[p] for p in chosen}, policy="drop", quiet=True)
        return {gene: combined.matrix[i] for i, gene in enumerate(combined.genes)}

    run = vectors(embedding.sources)
    missing = sorted(set(names) - set(run))
    if missing:
        log.info("references: no gene vector for %s", format_list(missing))
    per_prior = {prior: vectors([prior]) for prior in PRIOR_NAMES}
    return run, {**per_prior, ALL_PRIORS: vectors(PRIOR_NAMES)}


def compute_reference_shifts(
    dataset: PerturbationDataset,
    train_mask: NDArray[np.bool_],
    conditions: Sequence[Condition],
    embeddings: Mapping[str, NDArray[np.floating]],
    genes: Sequence[str] | None = None,
    names: Sequence[str] | None = None,
    info: Mapping[str, Any] | None = None,
    retrieval: RetrievalConfig | None = None,
    prior_embeddings: Mapping[str, Mapping[str, NDArray[np.floating]]] | None = None,
) -> ReferenceShifts:
    """Every shift reference's shift for each (cell type, perturbation) in ``conditions``.

    ``train_mask`` marks the training cells (control cells always count as controls); nothing else
    of ``dataset`` is read. ``genes`` fixes the column order (default: the dataset's); ``info`` is
    stored with the shifts; ``retrieval`` holds the memory arm's settings for ``evidence_only``
    (default: the default preset's); ``prior_embeddings`` the per-prior vectors of the linear
    references (:func:`prior_vectors`).
    """
    wanted = list(names or SHIFT_REFERENCES)
    unknown = [n for n in wanted if n not in SHIFT_REFERENCES]
    if unknown:
        raise ValueError(f"Not shift references: {unknown}; known: {list(SHIFT_REFERENCES)}")
    memory = training_memory(dataset, np.asarray(train_mask, dtype=bool), genes)
    queries = tuple((str(c), str(p)) for c, p in conditions)
    means, sources = train_mean_by_cell_type(memory, sorted({c for c, _ in queries}))
    inputs = ShiftInputs(
        memory, queries, embeddings, means, sources, retrieval or default_retrieval(), prior_embeddings or {}
    )
    shifts, records = {}, []
    for name in wanted:
        shift_fn = REFERENCE_REGISTRY[name].shift
        assert shift_fn is not None
        shifts[name], details = shift_fn(inputs)
        records += details
    facts = {
        "n_training_groups": len(memory),
        "knn_neighbours": KNN_NEIGHBOURS,
        "min_linear_groups": MIN_LINEAR_GROUPS,
        **(info or {}),
    }
    return ReferenceShifts(
        tuple(genes or dataset.genes),
        queries,
        {n: s.astype(np.float32) for n, s in shifts.items()},
        pd.DataFrame(records, columns=list(DETAIL_COLUMNS)),
        facts,
    )


def conditions_of(adata_real: Any, control_label: str) -> list[Condition]:
    """Sorted non-control (cell type, perturbation) pairs of a real file in ptrag's layout."""
    conditions = rows_by_condition(adata_real, PERT_COL, CELL_TYPE_COL)
    return sorted(condition for condition in conditions if condition[1] != control_label)


def reference_shifts_for_split(
    dataset: PerturbationDataset,
    split: Any,
    adata_real: Any,
    embedding: EmbeddingConfig,
    retrieval: RetrievalConfig | None = None,
) -> ReferenceShifts:
    """The shifts for the conditions of ``adata_real``, from the split's training cells."""
    log.info("computing the reference shifts (%s) from the training cells", ", ".join(SHIFT_REFERENCES))
    conditions = conditions_of(adata_real, dataset.control_label)
    perturbations = sorted({p for _, p in conditions} | set(dataset.perturbations()))
    train_mask = split.roles(dataset) == "train"
    run_vectors, per_prior = prior_vectors(perturbations, embedding, dataset)
    return compute_reference_shifts(
        dataset,
        train_mask,
        conditions,
        run_vectors,
        genes=[str(g) for g in adata_real.var_names],
        info={"embedding_source": embedding.source, "embedding_sources": list(embedding.sources)},
        retrieval=retrieval,
        prior_embeddings=per_prior,
    )
