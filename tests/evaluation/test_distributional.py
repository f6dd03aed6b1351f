"""Distributional metrics against closed forms, scipy, POT and geomloss."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm, wasserstein_distance

from ptrag.evaluation.distributional import (
    energy_distance,
    fit_pca,
    mmd_rbf_unbiased,
    sd_ratio,
    w2_ot,
    wasserstein_1d,
)


def _gaussian_quantiles(n: int) -> np.ndarray:
    return norm.ppf((np.arange(n) + 0.5) / n)


def test_shifted_samples_give_the_shift_per_dimension():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(200, 3))
    shift = np.array([0.5, -2.0, 0.0])
    w1, w2 = wasserstein_1d(a, a + shift)
    np.testing.assert_allclose(w1, np.abs(shift), atol=1e-12)
    np.testing.assert_allclose(w2, np.abs(shift), atol=1e-12)


def test_identical_sets_give_zero():
    a = np.random.default_rng(1).normal(size=(50, 4))
    w1, w2 = wasserstein_1d(a, a[::-1])
    assert np.all(w1 == 0) and np.all(w2 == 0)
    assert w2_ot(a, a[::-1]) == pytest.approx(0.0, abs=1e-9)
    assert energy_distance(a, a[::-1]) == pytest.approx(0.0, abs=1e-9)


def test_scaled_gaussians_match_closed_forms():
    z = _gaussian_quantiles(20000)
    sigma1, sigma2 = 1.0, 2.5
    w1, w2 = wasserstein_1d(sigma1 * z, sigma2 * z)
    # W2(N(0,s1²), N(0,s2²)) = |s1 - s2|; W1 = |s1 - s2| E|Z| = |s1 - s2| sqrt(2/pi).
    assert w2[0] == pytest.approx(abs(sigma1 - sigma2), rel=2e-3)
    assert w1[0] == pytest.approx(abs(sigma1 - sigma2) * np.sqrt(2 / np.pi), rel=2e-3)


@pytest.mark.parametrize(("n", "m"), [(7, 13), (50, 50), (31, 8), (1, 5)])
def test_unequal_sizes_match_scipy_and_pot(n, m):
    import ot

    rng = np.random.default_rng(n * 100 + m)
    a = rng.normal(size=n)
    b = rng.gamma(2.0, size=m)
    w1, w2 = wasserstein_1d(a, b)
    assert w1[0] == pytest.approx(wasserstein_distance(a, b), abs=1e-12)
    cost = (a[:, None] - b[None, :]) ** 2
    exact_w2 = np.sqrt(ot.emd2(np.full(n, 1 / n), np.full(m, 1 / m), cost))
    assert w2[0] == pytest.approx(exact_w2, abs=1e-9)


def test_w2_ot_of_a_translated_cloud_is_the_translation_norm():
    a = np.random.default_rng(2).normal(size=(40, 5))
    shift = np.array([1.0, 2.0, 0.0, -2.0, 0.5])
    assert w2_ot(a, a + shift) == pytest.approx(np.linalg.norm(shift), abs=1e-9)


def test_mmd_and_energy_separate_shifted_from_identical_distributions():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(60, 10))
    y_same = rng.normal(size=(60, 10))
    y_shifted = rng.normal(size=(60, 10)) + 1.0
    assert mmd_rbf_unbiased(x, x) <= 0.0  # unbiased: centred on zero for equal distributions
    assert abs(mmd_rbf_unbiased(x, y_same)) < 0.05
    assert mmd_rbf_unbiased(x, y_shifted) > 0.2
    assert energy_distance(x, x) == pytest.approx(0.0, abs=1e-9)
    assert energy_distance(x, y_shifted) > 5 * abs(energy_distance(x, y_same))


def test_energy_is_twice_geomloss_energy():
    import torch
    from geomloss import SamplesLoss

    torch.set_num_threads(1)
    rng = np.random.default_rng(4)
    x = rng.normal(size=(30, 6))
    y = rng.normal(size=(25, 6)) + 0.7
    theirs = float(SamplesLoss("energy")(torch.tensor(x), torch.tensor(y)))
    # geomloss clamps squared distances at 1e-8, so each zero self-distance counts as 1e-4.
    clamp_bias = 1e-4 * (1 / len(x) + 1 / len(y))
    assert energy_distance(x, y) == pytest.approx(2 * theirs + clamp_bias, abs=1e-9)


def test_sd_ratio_of_a_half_spread_prediction_is_one_half():
    real = np.random.default_rng(5).normal(size=(40, 8)) * 3 + 1
    pred = 0.5 * (real - real.mean(0)) + real.mean(0)
    assert sd_ratio(pred, real) == pytest.approx(0.5, rel=1e-12)
    assert sd_ratio(real, real) == pytest.approx(1.0)
    assert np.isnan(sd_ratio(real[:1], real))


def test_pca_projection_recovers_the_dominant_axis():
    rng = np.random.default_rng(6)
    axis = np.zeros(20)
    axis[3] = 1.0
    cells = rng.normal(size=(300, 1)) * 5 * axis + rng.normal(size=(300, 20)) * 0.1
    pca = fit_pca(cells, n_pcs=5)
    assert pca.n_components == 5
    assert abs(pca.components[0, 3]) > 0.99


def test_unbiased_energy_is_centred_on_zero_where_the_v_statistic_is_not():
    from ptrag.evaluation.distributional import energy_distances

    rng = np.random.default_rng(7)
    draws = np.array(
        [energy_distances(rng.normal(size=(10, 20)), rng.normal(size=(10, 20))) for _ in range(200)]
    )
    v_stat, u_stat = draws.mean(axis=0)
    spread = draws[:, 1].std() / np.sqrt(len(draws))
    assert abs(u_stat) < 4 * spread  # unbiased for equal distributions
    assert v_stat > 0.5  # biased upwards by ~ (E|X-X'|/n + E|Y-Y'|/m) ≈ 2 * 6.2 / 10
    x, y = rng.normal(size=(15, 4)), rng.normal(size=(12, 4))
    n, m = len(x), len(y)
    v, u = energy_distances(x, y)
    from scipy.spatial.distance import cdist

    assert u - v == pytest.approx(
        cdist(x, x).sum() * (1 / n**2 - 1 / (n * (n - 1)))
        + cdist(y, y).sum() * (1 / m**2 - 1 / (m * (m - 1)))
    )
