"""``evidence_only``: the memory arm's non-parametric start, as a shift reference.

The memory arm (``ptrag.models.evidence``) starts, before any training, as anchored control cells
plus the evidence mixture with every candidate kept: the query's own shift measured in other cell
types, James-Stein-shrunk per gene against its sampling noise, when it exists; otherwise the
cos^κ-weighted shifts of its nearest neighbours measured in the query's cell type. This reference
computes exactly that, with the model's own code (the stage-1 tables of
:class:`ptrag.models.retriever.Retriever` and the formula of
:class:`ptrag.models.evidence.EvidencePath` at its initial parameters), from training groups only.
What a trained memory arm adds is measured against it, paired.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ptrag.config.schema import RetrievalConfig
from ptrag.evaluation.shifts import FloatArray, ShiftInputs, ShiftResult, _fallback, _record
from ptrag.retrieval import ResponseMemory, RetrievalDatabase

__all__ = ["evidence_only_shifts"]

REFERENCE = "evidence_only"


def _initial_evidence(
    memory: ResponseMemory,
    embeddings: Mapping[str, Any],
    retrieval: RetrievalConfig,
    queries: list[tuple[str, str]],
) -> tuple[FloatArray, Any]:
    """(Q, G) evidence with every candidate kept, and the (Q, K) candidate validity."""
    import torch

    from ptrag.models.evidence import EvidencePath
    from ptrag.models.retriever import Retriever

    measured = sorted(set(memory.perturbations))
    database = RetrievalDatabase.build(measured, np.stack([embeddings[p] for p in measured]))
    vocabulary = sorted({p for _, p in queries})
    cell_types = sorted(set(memory.cell_types) | {c for c, _ in queries})
    retriever = Retriever(
        database,
        vocabulary,
        np.stack([embeddings[p] for p in vocabulary]),
        min(retrieval.top_k, len(memory)),
        memory=memory,
        cell_types=cell_types,
    )
    path = EvidencePath(1, retrieval.same_prior, retrieval.sharpness, retrieval.shrinkage)
    pert_index = torch.tensor([vocabulary.index(p) for _, p in queries])
    type_index = torch.tensor([cell_types.index(c) for c, _ in queries])
    with torch.no_grad():
        candidates = retriever(pert_index, type_index)
        keep = torch.ones(len(queries), 1, candidates.valid.shape[1])
        hidden = torch.zeros(len(queries), candidates.valid.shape[1], 1)
        evidence, _, _ = path(keep, hidden, torch.zeros(len(queries), 1), candidates)
    return evidence[:, 0].numpy().astype(np.float32), candidates.valid.numpy()


def evidence_only_shifts(inputs: ShiftInputs) -> ShiftResult:
    """Per condition, the memory arm's starting evidence; ``train_mean`` without any usable memory row.

    Measured perturbations need an embedding to be ranked; one without is left out of the database
    (and the query then falls back to train_mean), as training leaves it out of the vocabulary.
    """
    usable = [i for i, p in enumerate(inputs.memory.perturbations) if p in inputs.embeddings]
    memory = inputs.memory.subset(np.asarray(usable, dtype=np.int64))
    answerable = [q for q in inputs.conditions if q[1] in inputs.embeddings]
    found: dict[tuple[str, str], FloatArray] = {}
    if len(memory) and answerable:
        evidence, valid = _initial_evidence(memory, inputs.embeddings, inputs.retrieval, answerable)
        found = {q: evidence[i] for i, q in enumerate(answerable) if valid[i].any()}
    shifts, details = [], []
    for condition in inputs.conditions:
        if condition in found:
            shifts.append(found[condition])
            details.append(_record(REFERENCE, condition, "evidence", "memory arm at initialisation"))
            continue
        why = "no embedding for the query" if condition not in answerable else "no memory candidate"
        shift, record = _fallback(inputs, REFERENCE, condition, why)
        shifts.append(shift)
        details.append(record)
    return np.stack(shifts), details
