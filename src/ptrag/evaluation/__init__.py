"""Evaluation: distributional and cell-eval metrics per (cell type, perturbation), references, tests.

Public API::

    from ptrag.evaluation import evaluate, write_results, fit_pca_on_real
    result = evaluate(adata_pred, adata_real)          # EvaluationResult(.results, .agg)
    write_results(result, "out/")                      # results.csv, agg_results.csv
"""

from ptrag.evaluation.core import (
    HIGHER_IS_BETTER,
    METRICS,
    EvaluationResult,
    aggregate,
    evaluate,
    fit_pca_on_real,
    write_results,
)
from ptrag.evaluation.distributional import PCAProjection, fit_pca
from ptrag.evaluation.references import (
    REFERENCES,
    control_reference,
    evaluate_references,
    mean_training_shifts,
    noise_floor_pair,
    train_mean_reference,
)
from ptrag.evaluation.stats import bootstrap_ci, paired_tests

__all__ = [
    "HIGHER_IS_BETTER",
    "METRICS",
    "REFERENCES",
    "EvaluationResult",
    "PCAProjection",
    "aggregate",
    "bootstrap_ci",
    "control_reference",
    "evaluate",
    "evaluate_references",
    "fit_pca",
    "fit_pca_on_real",
    "mean_training_shifts",
    "noise_floor_pair",
    "paired_tests",
    "train_mean_reference",
    "write_results",
]
