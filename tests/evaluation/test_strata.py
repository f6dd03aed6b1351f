"""energy_strata / w1_strata on synthetic cells where the state structure is known."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from ptrag.data.strata import assign_strata, fit_strata, left_alone_genes
from ptrag.evaluation import METRIC_REGISTRY, evaluate, fit_pca
from ptrag.evaluation.distributional import energy_distances
from ptrag.evaluation.strata import STRATA_METRICS, strata_metrics

N_GENES = 40
STATE_GENES = np.arange(0, 10)  # expression differs between the two basal states
RESPONSE_GENES = np.arange(20, 30)  # moved by the perturbation, in state A only
STATE_GAP = 3.0
RESPONSE = 2.0


def _cells(rng: np.random.Generator, state: np.ndarray, respond: np.ndarray) -> np.ndarray:
    """Cells of basal state 0 (A) or 1 (B); ``respond`` adds the perturbation's response."""
    x = rng.normal(0.0, 1.0, size=(len(state), N_GENES))
    x[:, STATE_GENES] += STATE_GAP * state[:, None]
    x[np.ix_(respond, RESPONSE_GENES)] += RESPONSE
    return x


def _population(rng: np.random.Generator, n: int, perturbed: bool) -> tuple[np.ndarray, np.ndarray]:
    state = (rng.random(n) < 0.5).astype(float)
    respond = (state == 0) & perturbed  # only state-A cells respond
    return _cells(rng, state, respond), state


def _setting(seed: int = 0, n: int = 200):
    rng = np.random.default_rng(seed)
    controls, control_state = _population(rng, 400, perturbed=False)
    real, real_state = _population(rng, n, perturbed=True)
    strata = fit_strata(controls)
    pca = fit_pca(np.concatenate([controls, real]), n_pcs=10)
    return rng, controls, control_state, real, real_state, strata, pca


def _per_state(rng: np.random.Generator, n: int) -> np.ndarray:
    return _population(rng, n, perturbed=True)[0]


def _mean_shift(rng: np.random.Generator, n: int, real: np.ndarray, controls: np.ndarray) -> np.ndarray:
    base, _ = _population(rng, n, perturbed=False)
    return base + (real.mean(0) - controls.mean(0))


def test_strata_follow_the_basal_states_and_ignore_the_response() -> None:
    _, controls, control_state, real, real_state, strata, _ = _setting()
    assert strata.k == 4
    # k = 4 on two states: every stratum is pure (all of one state), both states are covered.
    stratum_state = np.array([control_state[strata.control_labels == j].mean() for j in range(strata.k)])
    assert set(np.round(stratum_state, 6)) == {0.0, 1.0}
    genes = left_alone_genes(strata, real)
    assert not genes[RESPONSE_GENES].any()  # the shifted genes are left out
    assert genes[STATE_GENES].all() and genes.sum() >= N_GENES - len(RESPONSE_GENES) - 2
    labels = assign_strata(strata, real, genes)
    assert np.array_equal(stratum_state[labels], real_state)  # every real cell in a stratum of its state
    # Nearest-centroid assignment of the controls themselves reproduces their k-means strata.
    assert np.array_equal(assign_strata(strata, controls), strata.control_labels)


def test_per_state_prediction_beats_the_pooled_mean_shift_on_energy_strata() -> None:
    rng, controls, _, real, _, strata, pca = _setting()
    right = strata_metrics(_per_state(rng, len(real)), real, strata, pca)
    pooled = strata_metrics(_mean_shift(rng, len(real), real, controls), real, strata, pca)
    assert right["energy_strata"] < 0.6 * pooled["energy_strata"]
    assert right["w1_strata"] < pooled["w1_strata"]
    # The pooled energy (the same unbiased estimator) sees the two predictions as much closer.
    right_pooled = energy_distances(_per_state(rng, len(real)), real)[1]
    mean_pooled = energy_distances(_mean_shift(rng, len(real), real, controls), real)[1]
    assert pooled["energy_strata"] - right["energy_strata"] > 2 * (mean_pooled - right_pooled)


def test_a_prediction_equal_in_distribution_scores_about_zero() -> None:
    rng, controls, _, real, _, strata, pca = _setting(seed=1, n=400)
    same = _per_state(rng, len(real))
    score = strata_metrics(same, real, strata, pca)["energy_strata"]
    pooled = strata_metrics(_mean_shift(rng, len(real), real, controls), real, strata, pca)
    # The U-statistic has no finite-n bias: equal distributions score 0 up to sampling noise, far
    # below what a pooled mean shift scores.
    assert abs(score) < 0.05 * pooled["energy_strata"]
    assert pooled["energy_strata"] > 0.5


def test_a_prediction_that_leaves_out_a_state_pays_for_it() -> None:
    rng, _, _, real, _, strata, pca = _setting()
    only_b = _cells(rng, np.ones(len(real)), np.zeros(len(real), dtype=bool))  # every cell in state B
    right = strata_metrics(_per_state(rng, len(real)), real, strata, pca)
    collapsed = strata_metrics(only_b, real, strata, pca)
    assert collapsed["energy_strata"] > 2 * right["energy_strata"]


def test_strata_with_too_few_real_cells_are_skipped_and_weights_renormalised() -> None:
    rng, _, _, _, _, strata, pca = _setting()
    state = np.array([0.0] * 30 + [1.0])  # state B has a single real cell
    real = _cells(rng, state, state == 0)
    pred = _cells(rng, state, state == 0)
    genes = left_alone_genes(strata, real)
    labels, pred_labels = assign_strata(strata, real, genes), assign_strata(strata, pred, genes)
    weights, energies = [], []
    for j in range(strata.k):
        if (labels == j).sum() < 2:
            continue
        p = pred[pred_labels == j] if (pred_labels == j).sum() >= 2 else pred
        weights.append((labels == j).sum())
        energies.append(energy_distances(p, real[labels == j])[1])
    expected = float(np.dot(weights, energies) / np.sum(weights))
    assert len(weights) < strata.k  # the lone state-B cell's stratum was skipped
    assert strata_metrics(pred, real, strata, pca)["energy_strata"] == pytest.approx(expected, rel=1e-12)
    assert np.isnan(strata_metrics(pred, real[:1], strata, pca)["energy_strata"])


def test_evaluate_reports_the_strata_metrics_lower_is_better() -> None:
    rng, controls, _, real, _, _, _ = _setting(n=120)
    right = _per_state(rng, len(real))
    pooled = _mean_shift(rng, len(real), real, controls)

    def adata(perturbed: np.ndarray) -> ad.AnnData:
        x = np.concatenate([perturbed, controls]).astype(np.float32)
        obs = pd.DataFrame(
            {
                "target_gene": ["P"] * len(perturbed) + ["non-targeting"] * len(controls),
                "cell_type": "k562",
            }
        )
        obs.index = obs.index.astype(str)
        return ad.AnnData(x, obs=obs, var=pd.DataFrame(index=[f"g{i}" for i in range(N_GENES)]))

    real_adata = adata(real)
    scores = {
        name: evaluate(adata(x), real_adata, include_de=False, include_ot=False, progress=False).results
        for name, x in (("right", right), ("pooled", pooled))
    }
    for name in STRATA_METRICS:
        assert METRIC_REGISTRY[name].direction == "lower"
        assert np.isfinite(scores["right"][name]).all()
        assert float(scores["right"][name].iloc[0]) < float(scores["pooled"][name].iloc[0])
