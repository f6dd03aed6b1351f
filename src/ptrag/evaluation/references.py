"""Reference predictors scored beside every method, and their registry.

Each builds pred-like AnnData with the same conditions as the real file and, per condition, as many
predicted cells as real cells (n-matched), so that W1/W2 — which depend on n — compare fairly.

- ``control``: for each (cell type, perturbation), n control cells of that cell type drawn
  (seeded, without replacement when the pool is large enough) from the real file's controls,
  re-centred on the mean, over the condition's real cells, of their batch's control mean (the
  cell type's whole pool without obs["batch"]): each cell keeps its deviation from the draw's
  mean, and the draw's mean becomes that anchor. The models anchor their input cells the same way
  (``model.anchor = "batch_pool"``, from the batches of the real cells they are matched to); a
  reference that did not would lose to them on the sampling noise of n control cells and on the
  batch offset of the condition's cells, neither of which says anything about the shift it
  predicts.
- ``train_mean``, ``perturb_shift``, ``knn_shift``, ``linear``, ``linear_<prior>`` (one per gene
  prior), ``evidence_only``: those same
  re-centred control cells (the same seeded draws) plus a per-condition shift computed from
  training cells only (:mod:`ptrag.evaluation.shifts`, :mod:`ptrag.evaluation.evidence_shift`),
  not clipped.
- ``noise_floor``: the real cells of each condition split into two random halves, one scored as
  the prediction of the other (n/2 vs n/2; both files keep the full control pool). It shows the
  sampling noise of the data; for W1/W2 it is *not* a lower bound on an n-vs-n score.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from ptrag.embeddings.priors import PRIOR_NAMES
from ptrag.errors import DataError
from ptrag.evaluation.control_draws import BuildContext, ShiftLookup, pred_like, shifted_controls
from ptrag.evaluation.evidence_shift import evidence_only_shifts
from ptrag.evaluation.pair import dense, rows_by_condition
from ptrag.evaluation.shifts import (
    ShiftInputs,
    ShiftResult,
    knn_shifts,
    linear_shifts,
    perturb_shifts,
    prior_linear_shifts,
    train_mean_shifts,
)
from ptrag.keys import BATCH_COL, PERT_COL

__all__ = [
    "REFERENCES",
    "REFERENCE_REGISTRY",
    "SHIFT_REFERENCES",
    "Reference",
    "control_reference",
    "evaluate_mean_on_controls",
    "evaluate_references",
    "mean_on_controls_name",
    "mean_on_controls_pair",
    "noise_floor_pair",
    "row_kind",
    "train_mean_reference",
]

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from ptrag.evaluation.reference_shifts import ReferenceShifts


@dataclass(frozen=True)
class Reference:
    """A reference: how to build its (pred, real) pair, the note shown in reports, and its shift.

    ``shift`` computes its per-condition shifts from training data; references without one need
    nothing but the real file.
    """

    name: str
    note: str
    build: Callable[[Any, BuildContext], tuple[Any, Any]]
    shift: Callable[[ShiftInputs], ShiftResult] | None = None


MEAN_ON_CONTROLS = "_mean_on_controls"  # suffix of the diagnostic row ``<arm>_mean_on_controls``


def mean_on_controls_name(method: str) -> str:
    return f"{method}{MEAN_ON_CONTROLS}"


ORACLE_PREFIX = "oracle_"  # rows that know a simulated screen's truth (ptrag.simulation.oracle)


def row_kind(name: str) -> str:
    """How tables label a non-method row: "diagnostic" (a method's own mean on real controls, which
    predicts nothing by itself), "oracle" (knows the simulated truth) or "reference" (a predictor
    from training data or controls)."""
    if name.endswith(MEAN_ON_CONTROLS):
        return "diagnostic"
    return "oracle" if name.startswith(ORACLE_PREFIX) else "reference"


def predicted_mean_shifts(pred: Any, real: Any, context: BuildContext) -> ShiftLookup:
    """(cell type, perturbation) → the prediction's own mean shift: the mean of its predicted cells
    minus the mean of the cell type's control pool in ``real`` (the pool the models anchor to)."""
    label, pert_col, celltype_col = context.control_label, context.pert_col, context.celltype_col
    x_pred, x_real = dense(pred.X), dense(real.X)
    predicted = rows_by_condition(pred, pert_col, celltype_col)
    pools = rows_by_condition(real, pert_col, celltype_col)
    means = {key: x_pred[rows].mean(axis=0, dtype=np.float64) for key, rows in predicted.items()}
    pool_means = {
        c: x_real[rows].mean(axis=0, dtype=np.float64) for (c, p), rows in pools.items() if p == label
    }

    def shift_for(cell_type: str, perturbation: str) -> NDArray[np.floating]:
        if (cell_type, perturbation) not in means:
            raise DataError(f"The prediction has no cells for {perturbation!r} in {cell_type!r}.")
        return means[(cell_type, perturbation)] - pool_means[cell_type]

    return shift_for


def mean_on_controls_pair(pred: Any, real: Any, context: BuildContext, method: str) -> tuple[Any, Any]:
    """(pred, real) of the diagnostic row ``<method>_mean_on_controls``: the method's own predicted
    mean shift per condition on the references' n-matched, re-centred real control cells. A method
    that loses to it on a distributional metric loses there through what it does to single cells."""
    name = mean_on_controls_name(method)
    # Re-centred on the pool and shifted by (predicted mean − pool mean), each draw's mean is the
    # method's predicted mean whatever anchor the references use: the row is the method's own mean.
    own = replace(context, anchor="control_pool")
    return shifted_controls(real, own, predicted_mean_shifts(pred, real, own), name), real


def control_reference(
    real: Any,
    control_label: str,
    pert_col: str = PERT_COL,
    celltype_col: str = "cell_type",
    seed: int = 0,
) -> Any:
    """Pred-like AnnData: n control cells of the same cell type per condition, re-centred on the
    anchor of :class:`BuildContext` (the mean of the condition's batches' control means)."""
    return shifted_controls(real, BuildContext(control_label, pert_col, celltype_col, seed), None, "control")


def train_mean_reference(
    real: Any,
    shifts: Mapping[str, NDArray[np.floating]],
    control_label: str,
    pert_col: str = PERT_COL,
    celltype_col: str = "cell_type",
    seed: int = 0,
) -> Any:
    """Pred-like AnnData: the ``control`` reference's cells plus the cell type's shift in ``shifts``.

    With the same seed it draws exactly the same control cells as :func:`control_reference`.
    """

    def shift_for(cell_type: str, _: str) -> NDArray[np.floating]:
        if cell_type not in shifts:
            raise DataError(f"No mean training shift for cell type {cell_type!r} (train_mean reference).")
        return shifts[cell_type]

    context = BuildContext(control_label, pert_col, celltype_col, seed)
    return shifted_controls(real, context, shift_for, "train_mean")


def noise_floor_pair(
    real: Any,
    control_label: str,
    pert_col: str = PERT_COL,
    celltype_col: str = "cell_type",
    seed: int = 0,
) -> tuple[Any, Any]:
    """(pred, real) halves: each condition's real cells split at random into n//2 and n//2 cells.

    Conditions with fewer than 2 cells are dropped. Both halves keep the full control pool so that
    deltas and DE use the same controls as the methods.
    """
    rng = np.random.default_rng(seed)
    x = dense(real.X)
    groups = rows_by_condition(real, pert_col, celltype_col)
    halves: tuple[list[NDArray[np.intp]], list[NDArray[np.intp]]] = ([], [])
    for (_, perturbation), rows in sorted(groups.items()):
        if perturbation == control_label:
            halves[0].append(rows)
            halves[1].append(rows)
            continue
        if rows.size < 2:
            continue
        order = rng.permutation(rows)
        half = rows.size // 2
        halves[0].append(order[:half])
        halves[1].append(order[half : 2 * half])
    out = []
    for arm, parts in zip(("noise_floor", "noise_floor_real"), halves, strict=True):
        chosen = np.concatenate(parts)
        obs = real.obs.iloc[chosen][[c for c in (pert_col, celltype_col, "batch") if c in real.obs.columns]]
        out.append(pred_like(real, [x[chosen]], [obs.reset_index(drop=True)], arm, control_label))
    return out[0], out[1]


def _control_pair(real: Any, context: BuildContext) -> tuple[Any, Any]:
    return shifted_controls(real, context, None, "control"), real


def _noise_floor_pair(real: Any, context: BuildContext) -> tuple[Any, Any]:
    return noise_floor_pair(real, context.control_label, context.pert_col, context.celltype_col, context.seed)


def _shifted_pair(name: str) -> Callable[[Any, BuildContext], tuple[Any, Any]]:
    def build(real: Any, context: BuildContext) -> tuple[Any, Any]:
        if context.shifts is None:
            raise DataError(f"The {name} reference needs per-condition shifts (references.npz).")
        return shifted_controls(real, context, context.shifts.lookup(name), name), real

    return build


_ENTRIES: tuple[Reference, ...] = (
    Reference(
        "control",
        "control cells of the same cell type (n-matched), re-centred on the cell type's control pool",
        _control_pair,
    ),
    Reference(
        "train_mean",
        "control cells plus the cell type's mean training shift",
        _shifted_pair("train_mean"),
        train_mean_shifts,
    ),
    Reference(
        "perturb_shift",
        "control cells plus the perturbation's mean training shift in the other cell types (else train_mean)",
        _shifted_pair("perturb_shift"),
        perturb_shifts,
    ),
    Reference(
        "knn_shift",
        "control cells plus the cosine-weighted mean shift of the 10 training perturbations of the cell "
        "type with the most similar gene embeddings (else train_mean)",
        _shifted_pair("knn_shift"),
        knn_shifts,
    ),
    Reference(
        "linear",
        "control cells plus a per-cell-type ridge map from every gene prior combined to shift, λ by "
        "leave-one-out (else train_mean)",
        _shifted_pair("linear"),
        linear_shifts,
    ),
    *(
        Reference(
            f"linear_{prior}",
            f"the linear reference on the {prior} gene prior alone (else train_mean)",
            _shifted_pair(f"linear_{prior}"),
            prior_linear_shifts(prior),
        )
        for prior in PRIOR_NAMES
    ),
    Reference(
        "evidence_only",
        "control cells plus the memory arm's starting evidence, no learning: the query's own shift in "
        "other cell types (noise-shrunk), else the cos^4-weighted shifts of its nearest neighbours in "
        "the cell type (else train_mean)",
        _shifted_pair("evidence_only"),
        evidence_only_shifts,
    ),
    Reference(
        "noise_floor",
        "split-half: n/2 real cells vs the other n/2; not a lower bound for W1/W2 at n vs n",
        _noise_floor_pair,
    ),
)
REFERENCE_REGISTRY: dict[str, Reference] = {r.name: r for r in _ENTRIES}
REFERENCES: tuple[str, ...] = tuple(REFERENCE_REGISTRY)
SHIFT_REFERENCES: tuple[str, ...] = tuple(r.name for r in _ENTRIES if r.shift is not None)


def evaluate_references(
    real: Any,
    control_label: str,
    shifts: ReferenceShifts | None = None,
    pca: Any = None,
    pert_col: str = PERT_COL,
    celltype_col: str = "cell_type",
    seed: int = 0,
    progress: bool = False,
    include_de: bool = True,
    prediction: Any = None,
    method: str = "prediction",
    seconds: dict[str, float] | None = None,
    batch_col: str = BATCH_COL,
) -> dict[str, Any]:
    """Score every reference that can be built against ``real`` with one shared PCA.

    Returns name → EvaluationResult in registry order. ``control`` and ``noise_floor`` need only
    ``real``; the shift references are scored when ``shifts`` holds them. With ``prediction`` (a
    method's predicted cells), the diagnostic row ``<method>_mean_on_controls`` comes last.
    ``seconds``, when given, receives each reference's wall time (building and scoring it).
    ``batch_col``: the obs column of ``real`` whose batches anchor every draw (the pool's mean
    without it, said once in the log).
    """
    import time

    from ptrag.evaluation.core import fit_pca_on_real

    if shifts is not None:
        shifts.check_matches(real, pert_col, celltype_col, control_label)
    shared_pca = pca if pca is not None else fit_pca_on_real(real, seed=seed)
    context = BuildContext(control_label, pert_col, celltype_col, seed, shifts, batch_col=batch_col)
    if batch_col not in real.obs.columns:
        log.info(
            "references: the real cells have no obs[%r], so each draw of control cells is re-centred "
            "on its cell type's control pool, not on its batches' (name the column with batch_col / "
            "--batch-column)",
            batch_col,
        )
    out = {}
    for reference in _ENTRIES:
        if reference.shift is not None and (shifts is None or reference.name not in shifts.shifts):
            continue
        started = time.perf_counter()
        out[reference.name] = _score(
            reference.build(real, context), context, shared_pca, progress, include_de
        )
        if seconds is not None:
            seconds[reference.name] = time.perf_counter() - started
    if prediction is not None:
        out[mean_on_controls_name(method)] = _score(
            mean_on_controls_pair(prediction, real, context, method),
            context,
            shared_pca,
            progress,
            include_de,
        )
    return out


def _score(pair: tuple[Any, Any], context: BuildContext, pca: Any, progress: bool, include_de: bool) -> Any:
    from ptrag.evaluation.core import evaluate

    return evaluate(
        *pair,
        control_label=context.control_label,
        pert_col=context.pert_col,
        celltype_col=context.celltype_col,
        pca=pca,
        progress=progress,
        include_de=include_de,
    )


def evaluate_mean_on_controls(
    prediction: Any, real: Any, control_label: str, method: str, pca: Any, include_de: bool = True
) -> Any:
    """Score only the diagnostic row ``<method>_mean_on_controls`` (the benchmark's per-run call),
    on the same control draws as :func:`evaluate_references` makes with seed 0."""
    context = BuildContext(control_label)
    return _score(mean_on_controls_pair(prediction, real, context, method), context, pca, False, include_de)
