"""Train, predict and evaluate every arm with the same split, steps and seeds; collect the results.

One call per split: runs go to ``OUT/runs/<split>/<arm>-seed<k>``, predictions (with the split's
reference shifts) to ``OUT/predictions/<split>/<arm>-seed<k>``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ptrag.config import DEFAULT_PRESET, load_config
from ptrag.config.arms import default_benchmark_arms
from ptrag.data.dataset import PerturbationDataset
from ptrag.data.loading import load_dataset
from ptrag.data.splits import Split
from ptrag.evaluation import (
    REFERENCE_FILE,
    REFERENCES,
    EvaluationResult,
    evaluate,
    evaluate_mean_on_controls,
    evaluate_references,
    fit_pca_on_real,
    reference_shifts_for_split,
)
from ptrag.evaluation.core import real_side_cache
from ptrag.keys import PERT_COL
from ptrag.prediction.predict import Prediction, predict_sets
from ptrag.prediction.write import write_prediction
from ptrag.run.checkpoint import Checkpoint
from ptrag.run.layout import read_run_split
from ptrag.training.run import train

__all__ = ["DEFAULT_ARMS", "BenchmarkRuns", "load_benchmark_dataset", "run_arms"]

log = logging.getLogger(__name__)

DEFAULT_ARMS: tuple[str, ...] = default_benchmark_arms()


@dataclass
class ArmRun:
    arm: str
    seed: int
    train_seconds: float
    predict_seconds: float
    evaluation: EvaluationResult
    retrieval: pd.DataFrame
    final_metrics: dict[str, float] = field(default_factory=dict)
    training_log: pd.DataFrame = field(default_factory=pd.DataFrame)  # the run's metrics.csv
    # The diagnostic row <arm>_mean_on_controls: this run's own mean shift on real control cells.
    mean_on_controls: EvaluationResult | None = None
    # Wall seconds of the run's other phases: validation and calibration (within train_seconds),
    # scoring the arm and scoring its <arm>_mean_on_controls row.
    phase_seconds: dict[str, float] = field(default_factory=dict)


@dataclass
class BenchmarkRuns:
    arms: list[ArmRun]
    references: dict[str, EvaluationResult]
    split_info: dict[str, object]
    config: dict[str, object]
    # Wall seconds of the split's shared phases (reference shifts, each reference, the oracle rows).
    phase_seconds: dict[str, float] = field(default_factory=dict)


def _training_log(run_dir: Path) -> pd.DataFrame:
    path = run_dir / "metrics.csv"
    return pd.read_csv(path) if path.exists() else pd.DataFrame()


def _last_logged(frame: pd.DataFrame) -> dict[str, float]:
    out = {}
    for column in (
        "train/loss",
        "val/loss",
        "train/selection_rate",
        "train/kept_per_set",
        "train/step_time_s",
    ):
        if column in frame and frame[column].notna().any():
            values = frame[column].dropna()
            # Step time: the median over the run; losses and rates: the last logged value.
            out[column] = float(values.median() if column.endswith("step_time_s") else values.iloc[-1])
    return out


def oracle_rows(
    sim_dir: Path, adata_real: object, control_label: str, pca: object
) -> dict[str, EvaluationResult]:
    """On a screen ``ptrag simulate`` wrote (its truth beside the data): the oracle rows, scored like
    references. ``oracle_mean_shift`` needs the truth; ``oracle_per_cell`` and ``oracle_per_stratum`` a
    preset with basal states."""
    from ptrag.errors import DataError
    from ptrag.simulation.api import TRUTH_FILE
    from ptrag.simulation.oracle import STATE_ORACLE_KINDS, load_screen_model, oracle_predictions

    if not (sim_dir / TRUTH_FILE).is_file():
        return {}
    try:
        model = load_screen_model(sim_dir)
    except DataError:
        return {}
    rows: dict[str, EvaluationResult] = {}
    for kinds in (STATE_ORACLE_KINDS, ("mean_shift",)):
        try:
            preds = oracle_predictions(sim_dir, adata_real, kinds, control_label=control_label, model=model)
        except DataError as exc:  # e.g. no basal states in this preset: no per-cell oracles
            log.info("[benchmark] no %s row: %s", " or ".join(f"oracle_{k}" for k in kinds), exc)
            continue
        for kind, pred in preds.items():
            rows[f"oracle_{kind}"] = evaluate(pred, adata_real, pca=pca, progress=False)
    return rows


def load_benchmark_dataset(
    data_path: Path, config_source: str = DEFAULT_PRESET, overrides: Sequence[str] = ()
) -> PerturbationDataset:
    """The screen, loaded once for every split and arm, as the arms' config reads it."""
    base = load_config(config_source, overrides)
    return load_dataset(data_path, base.data, set_len=base.train.cell_set_len)


# Every row of the split is scored against the same real cells: what depends on them alone
# (strata, real DE genes, projections) is computed once (ptrag.evaluation.core.real_side_cache).
@real_side_cache()
def run_arms(
    dataset: PerturbationDataset,
    split_path: Path,
    out: Path,
    split_name: str = "fewshot",
    arms: Sequence[str] = DEFAULT_ARMS,
    seeds: int = 1,
    config_source: str = DEFAULT_PRESET,
    overrides: Sequence[str] = (),
    progress: bool = True,
) -> BenchmarkRuns:
    base = load_config(config_source, overrides)
    split = Split.read(split_path)
    split.validate(dataset)
    test_groups = split.groups(dataset, "test")
    runs_dir, predictions_dir = out / "runs" / split_name, out / "predictions" / split_name
    runs: list[ArmRun] = []
    real: Prediction | None = None
    pca = None
    for seed in range(seeds):
        for arm in arms:
            config = load_config(config_source, [*overrides, f"model.arm={arm}", f"train.seed={seed}"])
            run_dir = runs_dir / f"{arm}-seed{seed}"
            steps = config.train.max_steps
            log.info("[benchmark] %s split: training %s (seed %d, %d steps)", split_name, arm, seed, steps)
            started = time.perf_counter()
            outcome = train(config, dataset, split, run_dir, overwrite=True, progress=progress)
            trained_s = time.perf_counter() - started
            started = time.perf_counter()
            prediction = predict_sets(
                Checkpoint.load(run_dir), dataset, test_groups, seed=seed, progress=False
            )
            predict_s = time.perf_counter() - started
            write_prediction(prediction, predictions_dir / f"{arm}-seed{seed}", overwrite=True)
            if real is None:
                real = prediction
                pca = fit_pca_on_real(prediction.adata_real, seed=0)
            log.info(
                "[benchmark] %s split: trained %s in %.1f s (validation %.1f s, calibration %.1f s), "
                "predicted in %.1f s; evaluating (seed %d)",
                split_name,
                arm,
                trained_s,
                outcome.validation_seconds,
                outcome.calibration_seconds,
                predict_s,
                seed,
            )
            started = time.perf_counter()
            result = evaluate(
                prediction.adata_pred, prediction.adata_real, pca=pca, progress=False, seed=seed
            )
            evaluate_s = time.perf_counter() - started
            own_mean = evaluate_mean_on_controls(
                prediction.adata_pred, prediction.adata_real, dataset.control_label, arm, pca
            )
            own_mean_s = time.perf_counter() - started - evaluate_s
            log.info(
                "[benchmark] %s split: evaluated %s in %.1f s, its mean on controls in %.1f s",
                split_name,
                arm,
                evaluate_s,
                own_mean_s,
            )
            training_log = _training_log(run_dir)
            runs.append(
                ArmRun(
                    arm,
                    seed,
                    trained_s,
                    predict_s,
                    result,
                    prediction.retrieval,
                    _last_logged(training_log),
                    training_log,
                    own_mean,
                    {
                        "validation": outcome.validation_seconds,
                        "calibration": outcome.calibration_seconds,
                        "evaluate": evaluate_s,
                        "evaluate_mean_on_controls": own_mean_s,
                    },
                )
            )
    assert real is not None and real.adata_real is not None
    log.info("[benchmark] %s split: evaluating references (%s)", split_name, ", ".join(REFERENCES))
    # The runs' own split: where the file has no val groups, training held some training groups out
    # for validation, and the references must not learn from groups the models never trained on.
    trained_split = read_run_split(runs_dir / f"{runs[0].arm}-seed{runs[0].seed}")
    phases: dict[str, float] = {}
    started = time.perf_counter()
    shifts = reference_shifts_for_split(
        dataset, trained_split, real.adata_real, base.embedding, base.retrieval
    )
    for run in runs:  # every prediction directory carries its references, as `ptrag predict` writes them
        shifts.save(predictions_dir / f"{run.arm}-seed{run.seed}" / REFERENCE_FILE)
    phases["reference_shifts"] = time.perf_counter() - started
    references = evaluate_references(
        real.adata_real, dataset.control_label, shifts=shifts, pca=pca, seed=0, seconds=phases
    )
    started = time.perf_counter()
    references |= oracle_rows(split_path.parent, real.adata_real, dataset.control_label, pca)
    phases["oracle"] = time.perf_counter() - started
    log.info(
        "[benchmark] %s split: references and oracle rows in %.1f s (%s)",
        split_name,
        sum(phases.values()),
        ", ".join(f"{name} {seconds:.1f}" for name, seconds in phases.items()),
    )
    info = {
        "split_file": split_path.name,  # the staging directory it was read from is gone afterwards
        "n_train_groups": len(split.groups(dataset, "train")),
        "n_test_groups": len(test_groups),
        "n_test_cells": int((real.adata_real.obs[PERT_COL] != dataset.control_label).sum()),
    }
    from ptrag.config import config_to_dict

    return BenchmarkRuns(runs, references, info, config_to_dict(base), phases)
