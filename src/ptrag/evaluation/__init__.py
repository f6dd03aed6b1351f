"""Evaluation: distributional and cell-eval metrics per (cell type, perturbation), references, tests.

Public API::

    from ptrag.evaluation import evaluate, write_results, fit_pca_on_real, evaluate_references
    result = evaluate(adata_pred, adata_real)          # EvaluationResult(.results, .agg)
    write_results(result, "out/")                      # results.csv, agg_results.csv
    shifts = ReferenceShifts.load("pred/references.npz")
    refs = evaluate_references(adata_real, "non-targeting", shifts=shifts)  # name → EvaluationResult

Metrics and references each have one registry: :data:`METRIC_REGISTRY` and :data:`REFERENCE_REGISTRY`.
"""

from ptrag.evaluation.core import EvaluationResult, aggregate, evaluate, fit_pca_on_real, write_results
from ptrag.evaluation.distributional import PCAProjection, fit_pca
from ptrag.evaluation.metric_registry import METRIC_REGISTRY, METRICS, Metric, metric, metrics_where
from ptrag.evaluation.reference_report import comparison_table, write_reference_results
from ptrag.evaluation.reference_shifts import (
    REFERENCE_FILE,
    ReferenceShifts,
    compute_reference_shifts,
    prior_vectors,
    reference_shifts_for_split,
)
from ptrag.evaluation.references import (
    REFERENCE_REGISTRY,
    REFERENCES,
    SHIFT_REFERENCES,
    Reference,
    control_reference,
    evaluate_mean_on_controls,
    evaluate_references,
    mean_on_controls_name,
    noise_floor_pair,
    row_kind,
    train_mean_reference,
)
from ptrag.evaluation.shifts import mean_training_shifts
from ptrag.evaluation.stats import bootstrap_ci, paired_tests

__all__ = [
    "METRICS",
    "METRIC_REGISTRY",
    "REFERENCES",
    "REFERENCE_FILE",
    "REFERENCE_REGISTRY",
    "SHIFT_REFERENCES",
    "EvaluationResult",
    "Metric",
    "PCAProjection",
    "Reference",
    "ReferenceShifts",
    "aggregate",
    "bootstrap_ci",
    "comparison_table",
    "compute_reference_shifts",
    "control_reference",
    "evaluate",
    "evaluate_mean_on_controls",
    "evaluate_references",
    "fit_pca",
    "fit_pca_on_real",
    "mean_on_controls_name",
    "mean_training_shifts",
    "metric",
    "metrics_where",
    "noise_floor_pair",
    "paired_tests",
    "prior_vectors",
    "reference_shifts_for_split",
    "row_kind",
    "train_mean_reference",
    "write_reference_results",
    "write_results",
]
