"""Every arm learns: after a short CPU run its test energy distance beats the control reference."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ptrag.evaluation import evaluate, evaluate_references, fit_pca_on_real
from ptrag.prediction.predict import predict_sets
from ptrag.run.checkpoint import Checkpoint


@pytest.fixture(scope="module")
def scores(tiny_data, trained_runs) -> dict[str, pd.DataFrame]:
    dataset, split = tiny_data
    groups = split.groups(dataset, "test")
    out = {}
    real = None
    for arm, run_dir in trained_runs.items():
        prediction = predict_sets(Checkpoint.load(run_dir), dataset, groups, progress=False)
        real = prediction.adata_real
        pca = fit_pca_on_real(real)
        out[arm] = evaluate(prediction.adata_pred, real, pca=pca, include_de=False, progress=False).results
    out.update(
        {
            name: result.results
            for name, result in evaluate_references(
                real, dataset.control_label, pca=fit_pca_on_real(real)
            ).items()
        }
    )
    return out


@pytest.mark.parametrize("arm", ["st", "vanilla_rag", "ptrag", "memory"])
def test_every_arm_beats_the_control_reference_on_energy(scores, arm: str) -> None:
    arm_energy = scores[arm]["energy_gene"].mean()
    control_energy = scores["control"]["energy_gene"].mean()
    print(f"{arm}: energy {arm_energy:.3f} vs control {control_energy:.3f}")
    assert arm_energy < control_energy


@pytest.mark.parametrize("arm", ["st", "vanilla_rag", "ptrag", "memory"])
def test_predictions_keep_cell_to_cell_spread(scores, arm: str) -> None:
    """DESIGN §2: a collapsed model (sd_ratio ≪ 1) is a defect, not a result."""
    ratio = float(np.nanmean(scores[arm]["sd_ratio"]))
    assert 0.7 < ratio < 1.3, ratio
