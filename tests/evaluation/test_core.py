"""evaluate(): one row per (cell type, perturbation), NaN handling, validation, files."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from eval_synthetic import CONTROL, make_pair

from ptrag.errors import DataError
from ptrag.evaluation import METRICS, aggregate, evaluate, fit_pca_on_real, write_results


def test_one_row_per_condition_and_never_the_control():
    pred, real = make_pair(cell_types=("k562", "rpe1"), n_perts=4)
    result = evaluate(pred, real, progress=False)
    assert len(result.results) == 8
    assert CONTROL not in set(result.results["perturbation"])
    assert set(result.results["cell_type"]) == {"k562", "rpe1"}
    assert set(METRICS) <= set(result.results.columns)
    assert (result.results["n_pred"] == result.results["n_real"]).all()
    assert result.control_label == CONTROL
    assert list(result.agg.index) == ["count", "nan_count", "mean", "median", "std", "min", "max"]


def test_perfect_prediction_scores_perfectly():
    _, real = make_pair(n_perts=5, n_genes=40, n_cells=30, n_controls=60)
    result = evaluate(real.copy(), real, progress=False).results
    for metric in ("w1", "w2", "w2_ot", "energy_gene", "energy_pca", "mmd_pca", "mse", "mae"):
        np.testing.assert_allclose(result[metric], 0.0, atol=1e-7, err_msg=metric)
    np.testing.assert_allclose(result["pearson_delta"], 1.0, atol=1e-9)
    np.testing.assert_allclose(result["sd_ratio"], 1.0, atol=1e-9)
    assert (result["discrimination_score_l1"] == 1.0).all()
    assert (result["overlap_at_N"] == 1.0).all()


def test_a_worse_prediction_scores_worse_on_every_distance():
    good_pred, real = make_pair(seed=1, pred_effect_scale=0.9)
    bad_pred, _ = make_pair(seed=1, pred_effect_scale=0.0)
    pca = fit_pca_on_real(real)
    good = evaluate(good_pred, real, pca=pca, progress=False).agg.loc["mean"]
    bad = evaluate(bad_pred, real, pca=pca, progress=False).agg.loc["mean"]
    for metric in ("w1", "w2", "w2_ot", "energy_gene", "energy_pca", "mmd_gene", "mse", "mae"):
        assert good[metric] < bad[metric], metric
    assert good["pearson_delta"] > bad["pearson_delta"]


def test_nan_is_skipped_and_counted():
    frame = pd.DataFrame({"w1": [1.0, np.nan, 3.0], "pearson_delta": [np.nan, np.nan, np.nan]})
    agg = aggregate(frame)
    assert agg.loc["mean", "w1"] == 2.0
    assert agg.loc["median", "w1"] == 2.0
    assert agg.loc["nan_count", "w1"] == 1
    assert agg.loc["count", "w1"] == 2
    assert agg.loc["nan_count", "pearson_delta"] == 3
    assert np.isnan(agg.loc["mean", "pearson_delta"])


def test_constant_predicted_delta_gives_a_counted_nan_not_a_nan_average():
    pred, real = make_pair(n_perts=4)
    # Predicted controls and GENE0 cells all equal one profile: GENE0's predicted delta is exactly
    # zero, so its Pearson correlation is undefined.
    profile = pred.X[0].copy()
    rows = np.flatnonzero(pred.obs["target_gene"].isin([CONTROL, "GENE0"]))
    pred.X[rows] = profile
    result = evaluate(pred, real, progress=False)
    assert np.isnan(result.results.set_index("perturbation").loc["GENE0", "pearson_delta"])
    assert result.nan_counts["pearson_delta"] == 1
    assert np.isfinite(result.agg.loc["mean", "pearson_delta"])


def test_mismatched_genes_are_named():
    pred, real = make_pair()
    pred.var_names = [*pred.var_names[:-1], "NOT_A_GENE"]
    with pytest.raises(DataError, match="NOT_A_GENE"):
        evaluate(pred, real, progress=False)


def test_reordered_genes_are_refused_with_a_clear_message():
    pred, real = make_pair()
    with pytest.raises(DataError, match="different order"):
        evaluate(pred[:, ::-1].copy(), real, progress=False)


def test_mismatched_conditions_are_named():
    pred, real = make_pair()
    pred = pred[pred.obs["target_gene"] != "GENE2"].copy()
    with pytest.raises(DataError, match="GENE2"):
        evaluate(pred, real, progress=False)


def test_unknown_control_label_lists_the_labels():
    pred, real = make_pair()
    with pytest.raises(DataError, match="GENE0"):
        evaluate(pred, real, control_label="ctrl", progress=False)


def test_write_results_uses_cell_eval_file_names(tmp_path):
    pred, real = make_pair(n_perts=3)
    result = evaluate(pred, real, progress=False)
    results_path, agg_path = write_results(result, tmp_path)
    assert results_path.name == "results.csv" and agg_path.name == "agg_results.csv"
    back = pd.read_csv(results_path)
    np.testing.assert_allclose(back["w1"], result.results["w1"])
    agg = pd.read_csv(agg_path).set_index("statistic")
    assert agg.loc["mean", "energy_gene"] == pytest.approx(result.results["energy_gene"].mean())


def test_non_finite_predictions_are_refused():
    pred, real = make_pair()
    pred.X[3, 2] = np.nan
    with pytest.raises(DataError, match=r"adata_pred\.X holds 1 NaN"):
        evaluate(pred, real, progress=False)


def test_the_real_side_cache_changes_no_value_and_is_keyed_by_content():
    # The benchmark scores many predictions against one real file inside real_side_cache(); every
    # value must equal a fresh evaluation, also for a second prediction and a different real file.
    from ptrag.evaluation.core import real_side_cache

    good_pred, real = make_pair(seed=3, n_controls=80, pred_effect_scale=0.9)
    bad_pred, _ = make_pair(seed=3, n_controls=80, pred_effect_scale=0.0)
    other_pred, other_real = make_pair(seed=4, n_controls=80)
    pca = fit_pca_on_real(real)
    fresh = [
        evaluate(p, r, pca=pca, progress=False).results
        for p, r in ((good_pred, real), (bad_pred, real), (other_pred, other_real))
    ]
    with real_side_cache():
        cached = [
            evaluate(p, r, pca=pca, progress=False).results
            for p, r in ((good_pred, real), (bad_pred, real), (other_pred, other_real))
        ]
    for before, after in zip(fresh, cached, strict=True):
        pd.testing.assert_frame_equal(before, after)
    assert not fresh[0]["energy_gene"].equals(fresh[1]["energy_gene"])
    assert fresh[0]["energy_strata"].notna().all()
