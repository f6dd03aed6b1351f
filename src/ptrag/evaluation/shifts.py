"""Per-condition shifts of the simple references, computed from training cells and control cells only.

A shift is a (perturbed mean − control mean) vector in log1p space. The training shift of every
training (perturbation, cell type) group comes from :meth:`ptrag.retrieval.ResponseMemory.from_training_cells`
(its one home); no validation or test cell enters any statistic here.

- ``train_mean``: the mean training shift of the query's cell type; a cell type without training
  groups (zero-shot) gets the mean over every training group of every cell type.
- ``perturb_shift``: the query perturbation's training shift in the *other* cell types where it is
  a training group, averaged over those cell types; where there is none, ``train_mean``.
- ``knn_shift``: the :data:`KNN_NEIGHBOURS` training perturbations of the *same* cell type whose gene
  embeddings have the highest cosine with the query's (never the query itself); their shifts are
  averaged with weights max(cosine, 0), so neighbours with a non-positive cosine get no weight. No
  neighbour with a positive cosine, or no embedding for the query: ``train_mean``.
- ``linear``: per cell type, ridge regression from gene vector to training shift with λ chosen by
  exact leave-one-out error (:mod:`ptrag.evaluation.ridge`), applied to the query's vector, on
  every registered gene prior combined (``ptrag.embeddings.priors``). A cell type with fewer than
  :data:`MIN_LINEAR_GROUPS` training groups with a vector, or a query without one: ``train_mean``.
- ``linear_<prior>`` (``linear_text``, ``linear_go``, ``linear_coexpression``): the same on one
  prior alone, so a table shows which prior carries the unseen case.

Every fallback is recorded in :attr:`ReferenceShifts.details`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ptrag.config.schema import RetrievalConfig
from ptrag.data.dataset import PerturbationDataset
from ptrag.errors import DataError, format_list
from ptrag.evaluation.ridge import fit_ridge_loo
from ptrag.retrieval import ResponseMemory, RetrievalDatabase

__all__ = [
    "ALL_PRIORS",
    "DETAIL_COLUMNS",
    "KNN_NEIGHBOURS",
    "MIN_LINEAR_GROUPS",
    "Condition",
    "FloatArray",
    "ShiftInputs",
    "ShiftResult",
    "default_retrieval",
    "knn_shifts",
    "linear_shifts",
    "mean_training_shifts",
    "perturb_shifts",
    "prior_linear_shifts",
    "train_mean_by_cell_type",
    "train_mean_shifts",
    "training_memory",
]

Condition = tuple[str, str]  # (cell type, perturbation)
FloatArray = NDArray[np.float32]
KNN_NEIGHBOURS = 10
MIN_LINEAR_GROUPS = 5
DETAIL_COLUMNS: tuple[str, ...] = ("reference", "cell_type", "perturbation", "source", "detail")


@dataclass(frozen=True)
class ShiftInputs:
    """Everything a shift reference may use: training shifts, the queries and gene embeddings."""

    memory: ResponseMemory  # training (perturbation, cell type) shifts, columns in ``genes`` order
    conditions: tuple[Condition, ...]
    embeddings: Mapping[str, NDArray[np.floating]]  # perturbation → gene embedding
    train_mean: Mapping[str, FloatArray]
    train_mean_source: Mapping[str, str]
    # The memory arm's retrieval settings, for ``evidence_only`` (its start): the default preset's.
    retrieval: RetrievalConfig = field(default_factory=lambda: default_retrieval())
    # Gene prior name (and ALL_PRIORS) → perturbation → vector, for the linear references; where
    # absent, ``linear`` uses ``embeddings`` and ``linear_<prior>`` falls back to train_mean.
    prior_embeddings: Mapping[str, Mapping[str, NDArray[np.floating]]] = field(default_factory=dict)

    @cached_property
    def _rows_by_cell_type(self) -> dict[str, NDArray[np.intp]]:
        types = np.array(self.memory.cell_types)
        return {str(c): np.flatnonzero(types == c) for c in np.unique(types)}

    def rows_of(self, cell_type: str) -> NDArray[np.intp]:
        """Memory rows (training groups) of ``cell_type``."""
        return self._rows_by_cell_type.get(cell_type, np.zeros(0, dtype=np.intp))


def default_retrieval() -> RetrievalConfig:
    """The retrieval settings a run gets without a config: the default preset's."""
    from ptrag.config import DEFAULT_PRESET, load_config

    return load_config(DEFAULT_PRESET).retrieval


ShiftResult = tuple[FloatArray, list[dict[str, str]]]  # (C, G) shifts and one detail record per condition


def _record(reference: str, condition: Condition, source: str, detail: str = "") -> dict[str, str]:
    return dict(zip(DETAIL_COLUMNS, (reference, *condition, source, detail), strict=True))


def _fallback(inputs: ShiftInputs, reference: str, condition: Condition, why: str) -> tuple[Any, dict]:
    cell_type = condition[0]
    return inputs.train_mean[cell_type], _record(
        reference, condition, "train_mean", f"{why}; {inputs.train_mean_source[cell_type]}"
    )


def train_mean_by_cell_type(
    memory: ResponseMemory, cell_types: Sequence[str]
) -> tuple[dict[str, FloatArray], dict[str, str]]:
    """Per cell type: the mean training shift, and where it came from (own cell type or all)."""
    types = np.array(memory.cell_types)
    if len(memory) == 0:
        raise DataError("No training (perturbation, cell type) group has cells: the references need some.")
    pooled = memory.shifts.mean(axis=0)
    means, sources = {}, {}
    for cell_type in cell_types:
        rows = types == cell_type
        if rows.any():
            means[cell_type] = memory.shifts[rows].mean(axis=0)
            sources[cell_type] = f"mean of {int(rows.sum())} training groups of {cell_type}"
        else:
            means[cell_type] = pooled
            sources[cell_type] = f"none in {cell_type}: mean of all {len(memory)} training groups"
    return means, sources


def train_mean_shifts(inputs: ShiftInputs) -> ShiftResult:
    shifts = np.stack([inputs.train_mean[c] for c, _ in inputs.conditions])
    details = [
        _record("train_mean", query, "train_mean", inputs.train_mean_source[query[0]])
        for query in inputs.conditions
    ]
    return shifts, details


def perturb_shifts(inputs: ShiftInputs) -> ShiftResult:
    memory = inputs.memory
    rows_by_perturbation: dict[str, list[int]] = {}
    for row, perturbation in enumerate(memory.perturbations):
        rows_by_perturbation.setdefault(perturbation, []).append(row)
    shifts, details = [], []
    for cell_type, perturbation in inputs.conditions:
        rows = [r for r in rows_by_perturbation.get(perturbation, []) if memory.cell_types[r] != cell_type]
        if rows:
            shifts.append(memory.shifts[rows].mean(axis=0))
            others = sorted(memory.cell_types[r] for r in rows)
            details.append(
                _record("perturb_shift", (cell_type, perturbation), "other_cell_types", ";".join(others))
            )
        else:
            why = "not a training group in another cell type"
            shift, record = _fallback(inputs, "perturb_shift", (cell_type, perturbation), why)
            shifts.append(shift)
            details.append(record)
    return np.stack(shifts), details


def _unit(vector: NDArray[np.floating] | None) -> NDArray[np.float64] | None:
    if vector is None:
        return None
    v = np.asarray(vector, dtype=np.float64)
    norm = float(np.linalg.norm(v))
    return v / norm if norm > 0 else None


def knn_weights(
    query: NDArray[np.floating] | None,
    candidates: Sequence[str],
    embeddings: Mapping[str, NDArray[np.floating]],
    k: int = KNN_NEIGHBOURS,
    query_name: str = "",
) -> list[tuple[str, float, float]]:
    """(candidate, cosine, weight) of the ``k`` candidates most similar to ``query``, by the one cosine
    top-K of retrieval (:meth:`RetrievalDatabase.neighbours`, in float64; never ``query_name``).

    Ranked by cosine (ties by name); weight = max(cosine, 0) / Σ max(cosine, 0). Candidates without
    a (non-zero) embedding are skipped. Empty when the query has no embedding or no candidate has a
    positive cosine.
    """
    unit_query = _unit(query)
    present = sorted(name for name in candidates if name in embeddings)
    if unit_query is None or not present:
        return []
    matrix = np.stack([np.asarray(embeddings[name], dtype=np.float64) for name in present])
    usable = np.linalg.norm(matrix, axis=1) > 0
    if not usable.any():
        return []
    database = RetrievalDatabase.build(
        [name for name, ok in zip(present, usable, strict=True) if ok], matrix[usable], dtype=np.float64
    )
    found = database.neighbours([query_name], unit_query[None, :], k)
    kept = found.valid[0] & (found.cosine[0] > 0)
    rows, cosines = found.index[0][kept], found.cosine[0][kept]
    total = float(cosines.sum())
    return [
        (database.perturbations[row], float(cosine), float(cosine) / total)
        for row, cosine in zip(rows, cosines, strict=True)
    ]


def knn_shifts(inputs: ShiftInputs) -> ShiftResult:
    memory = inputs.memory
    shifts, details = [], []
    for cell_type, perturbation in inputs.conditions:
        rows = {memory.perturbations[r]: r for r in inputs.rows_of(cell_type)}
        rows.pop(perturbation, None)  # never the query itself
        neighbours = knn_weights(
            inputs.embeddings.get(perturbation), sorted(rows), inputs.embeddings, query_name=perturbation
        )
        if neighbours:
            weights = np.array([w for _, _, w in neighbours], dtype=np.float64)
            block = memory.shifts[[rows[name] for name, _, _ in neighbours]].astype(np.float64)
            shifts.append((weights @ block).astype(np.float32))
            text = ";".join(f"{name}:{cosine:.4f}" for name, cosine, _ in neighbours)
            details.append(_record("knn_shift", (cell_type, perturbation), "neighbours", text))
        else:
            why = (
                "no embedding for the query"
                if _unit(inputs.embeddings.get(perturbation)) is None
                else "no training neighbour in the cell type with a positive cosine"
            )
            shift, record = _fallback(inputs, "knn_shift", (cell_type, perturbation), why)
            shifts.append(shift)
            details.append(record)
    return np.stack(shifts), details


ALL_PRIORS = "all"  # prior_embeddings key of every registered prior combined


def _ridge_shifts(
    inputs: ShiftInputs, name: str, embeddings: Mapping[str, NDArray[np.floating]] | None
) -> ShiftResult:
    memory = inputs.memory
    vectors = embeddings or {}
    fits: dict[str, Any] = {}
    shifts, details = [], []
    for cell_type, perturbation in inputs.conditions:
        if cell_type not in fits:
            rows = [r for r in inputs.rows_of(cell_type) if memory.perturbations[r] in vectors]
            fits[cell_type] = (
                fit_ridge_loo(np.stack([vectors[memory.perturbations[r]] for r in rows]), memory.shifts[rows])
                if len(rows) >= MIN_LINEAR_GROUPS
                else len(rows)
            )
        fit = fits[cell_type]
        query = vectors.get(perturbation)
        if isinstance(fit, int) or query is None:
            if embeddings is None:
                why = "this prior was not given"
            elif isinstance(fit, int):
                why = f"{fit} training groups with an embedding (< {MIN_LINEAR_GROUPS})"
            else:
                why = "no embedding for the query"
            shift, record = _fallback(inputs, name, (cell_type, perturbation), why)
            shifts.append(shift)
            details.append(record)
            continue
        shifts.append(fit.predict(query)[0].astype(np.float32))
        text = (
            f"n={fit.n_samples}; lambda={fit.lam:.4g} (relative {fit.relative_lam:.3g}); "
            f"loo_mse={fit.loo_mse:.4g}; loo_mse_mean_only={fit.loo_mse_mean_only:.4g}"
        )
        details.append(_record(name, (cell_type, perturbation), "ridge", text))
    return np.stack(shifts), details


def linear_shifts(inputs: ShiftInputs) -> ShiftResult:
    return _ridge_shifts(inputs, "linear", inputs.prior_embeddings.get(ALL_PRIORS, inputs.embeddings))


def prior_linear_shifts(prior: str) -> Callable[[ShiftInputs], ShiftResult]:
    """The ``linear_<prior>`` reference: ridge on that one gene prior."""

    def shifts(inputs: ShiftInputs) -> ShiftResult:
        return _ridge_shifts(inputs, f"linear_{prior}", inputs.prior_embeddings.get(prior))

    return shifts


def training_memory(
    dataset: PerturbationDataset, train_mask: NDArray[np.bool_], genes: Sequence[str] | None = None
) -> ResponseMemory:
    """Training shifts of every training (perturbation, cell type), columns in ``genes`` order."""
    memory = ResponseMemory.from_training_cells(dataset, train_mask)
    if genes is None or tuple(genes) == tuple(dataset.genes):
        return memory
    position = {g: i for i, g in enumerate(dataset.genes)}
    missing = [g for g in genes if g not in position]
    if missing:
        raise DataError(f"The data lacks genes of the evaluated files: {format_list(missing)}.")
    columns = np.array([position[g] for g in genes], dtype=np.int64)
    return memory.subset(np.arange(len(memory)), columns)


def mean_training_shifts(
    dataset: PerturbationDataset, train_mask: NDArray[np.bool_]
) -> dict[str, NDArray[np.float32]]:
    """Per cell type with training groups: mean over training perturbations of (perturbed − control mean).

    ``train_mask`` marks the training cells; control cells always count as controls, and no held-out
    cell enters the reference. The per-(perturbation, cell type) shifts are the response memory's rows,
    computed in chunks, so the expression matrix is never densified.
    """
    memory = ResponseMemory.from_training_cells(dataset, train_mask)
    cell_types = np.array(memory.cell_types)
    return {str(c): memory.shifts[cell_types == c].mean(axis=0) for c in np.unique(cell_types)}
