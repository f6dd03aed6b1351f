"""energy_pca / mmd_pca follow gge-eval's per-PC definitions; the metric registry matches evaluate()."""

from __future__ import annotations

import numpy as np
import pytest
from eval_synthetic import make_pair

from ptrag.evaluation import METRIC_REGISTRY, METRICS, evaluate, fit_pca_on_real
from ptrag.evaluation.distributional import energy_per_component, mmd_per_component


def _gge_energy_1d(x: np.ndarray, y: np.ndarray, floor: float = 0.0) -> float:
    """gge-eval EnergyDistance (geomloss "energy" kernel -|x-y|): ½‖α−β‖²_k, all pairs, uniform weights.

    ``floor``: geomloss computes distances as sqrt(max(d², floor)).
    """

    def k(a, b):
        return -np.sqrt(np.maximum((a[:, None] - b[None, :]) ** 2, floor))

    return 0.5 * k(x, x).mean() + 0.5 * k(y, y).mean() - k(x, y).mean()


def _gge_mmd_1d(x: np.ndarray, y: np.ndarray) -> float:
    """gge-eval MMDDistance: RBF, σ = median of positive pooled |differences|, unbiased, max(0, ·)."""
    pooled = np.concatenate([x, y])
    gaps = np.abs(pooled[:, None] - pooled[None, :])
    sigma = np.median(gaps[gaps > 0])

    def k(a, b):
        return np.exp(-((a[:, None] - b[None, :]) ** 2) / (2 * sigma**2))

    n, m = len(x), len(y)
    kxx, kyy = k(x, x), k(y, y)
    value = (
        (kxx.sum() - np.trace(kxx)) / (n * (n - 1))
        + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
        - 2 * k(x, y).sum() / (n * m)
    )
    return max(0.0, value)


@pytest.fixture
def pcs():
    rng = np.random.default_rng(11)
    pred = rng.normal(size=(23, 6)) @ np.diag([3.0, 2.0, 1.0, 0.5, 0.2, 0.1])
    real = rng.normal(0.4, 1.3, size=(31, 6)) @ np.diag([3.0, 2.0, 1.0, 0.5, 0.2, 0.1])
    real[:3, 4] = real[3, 4]  # tied values: zero gaps must be left out of the bandwidth's median
    return pred, real


def test_energy_pca_matches_an_independent_gge_implementation(pcs):
    pred, real = pcs
    ours = energy_per_component(pred, real)
    theirs = np.array([_gge_energy_1d(pred[:, j], real[:, j]) for j in range(pred.shape[1])])
    np.testing.assert_allclose(ours, theirs, atol=1e-6, rtol=0)
    assert theirs.min() > 1e-3  # not vacuous: the samples differ on every component
    np.testing.assert_allclose(energy_per_component(real, pred), ours, atol=1e-12)  # symmetric


def test_mmd_pca_matches_an_independent_gge_implementation(pcs):
    pred, real = pcs
    ours = mmd_per_component(pred, real)
    theirs = np.array([_gge_mmd_1d(pred[:, j], real[:, j]) for j in range(pred.shape[1])])
    np.testing.assert_allclose(ours, theirs, atol=1e-6, rtol=0)
    assert theirs.max() > 0.01
    # Equal samples: every unbiased estimate is ≤ 0 and clipped to 0.
    np.testing.assert_array_equal(mmd_per_component(real, real), 0.0)


def test_energy_pca_is_geomloss_energy_per_component(pcs):
    """gge-eval calls geomloss SamplesLoss("energy") per PC; geomloss floors distances at 1e-4."""
    import torch
    from geomloss import SamplesLoss

    pred, real = pcs
    loss = SamplesLoss("energy", blur=0.5, backend="tensorized")
    columns = range(pred.shape[1])
    theirs = np.array([float(loss(torch.tensor(pred[:, [j]]), torch.tensor(real[:, [j]]))) for j in columns])
    floored = [_gge_energy_1d(pred[:, j], real[:, j], floor=1e-8) for j in columns]
    np.testing.assert_allclose(theirs, floored, atol=1e-9, rtol=0)
    # The floor lowers geomloss's value by about 5e-5 (1/n + 1/m); ours is the exact value.
    difference = energy_per_component(pred, real) - theirs
    assert np.all(difference > 0) and np.all(difference < 1e-5)


def test_evaluate_reports_the_per_pc_means_in_the_shared_pca():
    pred, real = make_pair(seed=4, n_perts=3, n_genes=25)
    pca = fit_pca_on_real(real, n_pcs=10)
    result = evaluate(pred, real, pca=pca, include_de=False, progress=False).results
    row = result.iloc[0]
    mask_pred = (pred.obs["target_gene"] == row["perturbation"]).to_numpy()
    mask_real = (real.obs["target_gene"] == row["perturbation"]).to_numpy()
    a, b = pca.transform(pred.X[mask_pred]), pca.transform(real.X[mask_real])
    assert row["energy_pca"] == pytest.approx(np.mean([_gge_energy_1d(a[:, j], b[:, j]) for j in range(10)]))
    assert row["mmd_pca"] == pytest.approx(np.mean([_gge_mmd_1d(a[:, j], b[:, j]) for j in range(10)]))
    # The gene-space energy is a different quantity, many times larger on the same cells.
    assert row["energy_gene"] > 5 * row["energy_pca"]


def test_every_registered_metric_is_a_column_and_nothing_else():
    pred, real = make_pair(n_perts=3)
    columns = evaluate(pred, real, progress=False).results.columns
    assert list(columns) == ["cell_type", "perturbation", "n_pred", "n_real", *METRICS]
    assert METRIC_REGISTRY["sd_ratio"].best_at == 1.0
    better = METRIC_REGISTRY["sd_ratio"].better(np.array([0.9, 1.2, 1.0]), np.array([1.2, 0.9, 1.0]))
    np.testing.assert_array_equal(better, [1.0, -1.0, 0.0])
    higher, lower = np.array([0.5]), np.array([0.2])
    np.testing.assert_array_equal(METRIC_REGISTRY["pearson_delta"].better(higher, lower), [1])
    np.testing.assert_array_equal(METRIC_REGISTRY["energy_gene"].better(higher, lower), [-1])
