"""References: n-matched, seeded, and ordered as they must be on a dataset with real effects."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from eval_synthetic import CONTROL, make_pair

from ptrag.errors import DataError
from ptrag.evaluation import (
    REFERENCE_REGISTRY,
    REFERENCES,
    SHIFT_REFERENCES,
    ReferenceShifts,
    control_reference,
    evaluate,
    evaluate_references,
    fit_pca_on_real,
    mean_training_shifts,
    noise_floor_pair,
    train_mean_reference,
)
from ptrag.evaluation.reference_shifts import conditions_of


def _constant_shifts(real, values: dict[str, np.ndarray]) -> ReferenceShifts:
    """Every condition of ``real`` gets the same shift per reference."""
    conditions = tuple(conditions_of(real, CONTROL))
    return ReferenceShifts(
        tuple(real.var_names),
        conditions,
        {name: np.tile(np.asarray(v, np.float32), (len(conditions), 1)) for name, v in values.items()},
    )


def _counts(adata):
    return adata.obs.groupby(["cell_type", "target_gene"], observed=True).size()


def test_control_reference_is_n_matched_seeded_and_made_of_controls():
    _, real = make_pair(n_cells=20, n_controls=40)
    ref = control_reference(real, CONTROL, seed=7)
    assert _counts(ref).equals(_counts(real))
    controls = real[real.obs["target_gene"] == CONTROL]
    assert set(ref.obs["control_barcode"]) <= set(controls.obs_names)
    again = control_reference(real, CONTROL, seed=7)
    np.testing.assert_array_equal(ref.X, again.X)
    assert ref.uns["ptrag"]["arm"] == "control"


def test_control_cells_are_recentred_on_the_control_pool_as_the_models_do():
    _, real = make_pair(n_cells=20, n_controls=40)
    ref = control_reference(real, CONTROL, seed=7)
    x = np.asarray(real.X)
    pool_mean = x[(real.obs["target_gene"] == CONTROL).to_numpy()].mean(axis=0)
    drawn = real[ref.obs["control_barcode"].to_numpy()].X
    conditions = ref.obs.groupby(["cell_type", "target_gene"], observed=True).indices
    for (_, perturbation), rows in conditions.items():
        if perturbation == CONTROL:
            continue
        cells = np.asarray(ref.X[rows])
        # The draw's mean is the pool's; each cell keeps its own deviation from the draw's mean.
        np.testing.assert_allclose(cells.mean(axis=0), pool_mean, atol=1e-5)
        raw = np.asarray(drawn[rows])
        np.testing.assert_allclose(cells - cells.mean(0), raw - raw.mean(0), atol=1e-5)


def _batched_pair():
    """(pred, real) whose real controls sit in batches b0 (40, shifted up by 1), b1 (40) and b2 (5:
    too few for a mean of their own); perturbation GENE0's cells are all in b0, GENE1's in b2."""
    pred, real = make_pair(n_cells=20, n_controls=85)
    is_control = (real.obs["target_gene"] == CONTROL).to_numpy()
    batch = np.array(["b1"] * real.n_obs, dtype=object)
    controls = np.flatnonzero(is_control)
    batch[controls[:40]], batch[controls[80:]] = "b0", "b2"
    batch[(real.obs["target_gene"] == "GENE0").to_numpy()] = "b0"
    batch[(real.obs["target_gene"] == "GENE1").to_numpy()] = "b2"
    real.obs["batch"] = batch
    x = np.asarray(real.X).copy()
    x[controls[:40]] += 1.0
    real.X = x
    return pred, real


def test_with_batches_each_draw_is_recentred_on_its_cells_batch_control_means():
    _, real = _batched_pair()
    x = np.asarray(real.X, dtype=np.float64)
    obs = real.obs
    controls = (obs["target_gene"] == CONTROL).to_numpy()
    pool = x[controls].mean(axis=0)
    batch_mean = {b: x[controls & (obs["batch"] == b).to_numpy()].mean(axis=0) for b in ("b0", "b1")}
    batch_mean["b2"] = pool  # 5 controls: the pool's mean stands in
    ref = control_reference(real, CONTROL, seed=7)
    conditions = ref.obs.groupby(["cell_type", "target_gene"], observed=True).indices
    for (_, perturbation), rows in conditions.items():
        if perturbation == CONTROL:
            continue
        real_batches = obs.loc[obs["target_gene"] == perturbation, "batch"]
        expected = np.mean([batch_mean[b] for b in real_batches], axis=0)
        np.testing.assert_allclose(np.asarray(ref.X[rows]).mean(axis=0), expected, atol=1e-5)
    gene0 = (ref.obs["target_gene"] == "GENE0").to_numpy()
    assert np.asarray(ref.X[gene0]).mean() - pool.mean() > 0.4  # all in the shifted batch
    # The pool anchor of before stays available (BuildContext.anchor).
    from ptrag.evaluation.control_draws import BuildContext, shifted_controls

    pooled = shifted_controls(real, BuildContext(CONTROL, seed=7, anchor="control_pool"), None, "control")
    np.testing.assert_allclose(np.asarray(pooled.X[gene0]).mean(axis=0), pool, atol=1e-5)
    np.testing.assert_array_equal(pooled.obs["control_barcode"], ref.obs["control_barcode"])  # same draws


def test_a_methods_mean_on_controls_row_has_exactly_its_predicted_means_under_either_anchor():
    from ptrag.evaluation.control_draws import BuildContext
    from ptrag.evaluation.references import mean_on_controls_pair

    pred, real = _batched_pair()
    means = pred.obs.groupby(["cell_type", "target_gene"], observed=True).indices
    for anchor in ("batch_pool", "control_pool"):
        row, _ = mean_on_controls_pair(pred, real, BuildContext(CONTROL, seed=3, anchor=anchor), "m")
        for key, rows in row.obs.groupby(["cell_type", "target_gene"], observed=True).indices.items():
            if key[1] != CONTROL:
                expected = np.asarray(pred.X[means[key]]).mean(axis=0)
                np.testing.assert_allclose(np.asarray(row.X[rows]).mean(axis=0), expected, atol=1e-5)


def test_the_batch_column_can_be_named_and_its_absence_is_said(caplog):
    import logging

    from ptrag.evaluation.control_draws import BuildContext, shifted_controls

    _, real = _batched_pair()
    renamed = real.copy()
    renamed.obs = renamed.obs.rename(columns={"batch": "gem_group"})
    named = shifted_controls(renamed, BuildContext(CONTROL, seed=7, batch_col="gem_group"), None, "control")
    np.testing.assert_array_equal(named.X, control_reference(real, CONTROL, seed=7).X)
    pooled = shifted_controls(renamed, BuildContext(CONTROL, seed=7), None, "control")
    assert not np.allclose(pooled.X, named.X)  # without the column: the pool's mean, not the batches'
    with caplog.at_level(logging.INFO, logger="ptrag.evaluation.references"):
        evaluate_references(renamed, CONTROL, include_de=False)
    assert "no obs['batch']" in caplog.text


def test_train_mean_adds_the_shift_to_the_same_controls():
    _, real = make_pair(n_genes=10)
    shift = np.linspace(-1, 1, 10)
    base = control_reference(real, CONTROL, seed=3)
    shifted = train_mean_reference(real, {"k562": shift}, CONTROL, seed=3)
    perturbed = (shifted.obs["target_gene"] != CONTROL).to_numpy()
    np.testing.assert_allclose(
        shifted.X[perturbed] - base.X[perturbed], np.tile(shift, (perturbed.sum(), 1)), atol=1e-6
    )
    np.testing.assert_array_equal(shifted.X[~perturbed], base.X[~perturbed])


def test_mean_training_shifts_is_the_mean_of_per_perturbation_shifts():
    from ptrag.data.dataset import ColumnMapping, PerturbationDataset
    from ptrag.data.expression import DenseExpression

    x = np.array([[0.0, 0.0], [2.0, 0.0], [4.0, 2.0], [4.0, 6.0], [90.0, 90.0]], dtype=np.float32)
    obs = pd.DataFrame(
        {
            "perturbation": pd.Categorical([CONTROL, CONTROL, "A", "B", "HELDOUT"]),
            "cell_type": pd.Categorical(["c"] * 5),
            "batch": pd.Categorical(["0"] * 5),
        },
        index=[f"cell{i}" for i in range(5)],
    )
    dataset = PerturbationDataset(
        DenseExpression(x), ("g0", "g1"), obs, ColumnMapping("gene", "cell_line", None, CONTROL)
    )
    # The held-out cell (last) is outside the training mask and must not move the reference.
    shifts = mean_training_shifts(dataset, np.array([False, False, True, True, False]))
    # control mean (1, 0); A shift (3, 2); B shift (3, 6); mean (3, 4)
    np.testing.assert_allclose(shifts["c"], [3.0, 4.0])


def test_noise_floor_splits_each_condition_into_disjoint_halves():
    _, real = make_pair(n_cells=21)
    half_pred, half_real = noise_floor_pair(real, CONTROL, seed=0)
    perturbed = half_pred.obs["target_gene"] != CONTROL
    assert (_counts(half_pred[perturbed]) == 10).all()
    assert _counts(half_pred).equals(_counts(half_real))


def test_noise_floor_beats_control_on_a_shifted_dataset():
    _, real = make_pair(seed=2, n_cells=40, n_controls=80, n_genes=40)
    pca = fit_pca_on_real(real)
    shifts = _constant_shifts(real, {"train_mean": np.zeros(real.n_vars)})
    scores = evaluate_references(real, CONTROL, shifts=shifts, pca=pca)
    assert list(scores) == ["control", "train_mean", "noise_floor"]  # registry order
    floor = scores["noise_floor"].agg.loc["mean"]
    control = scores["control"].agg.loc["mean"]
    for metric in ("energy_gene", "energy_gene_unbiased", "mmd_gene", "mmd_pca", "mse", "w1"):
        assert floor[metric] < control[metric], metric
    assert floor["pearson_delta"] > control["pearson_delta"]
    # A zero shift turns train_mean into the control reference.
    assert scores["train_mean"].agg.loc["mean", "energy_gene"] == pytest.approx(control["energy_gene"])


def test_every_shift_reference_is_the_control_draws_plus_its_shift_and_n_matched():
    _, real = make_pair(cell_types=("k562", "rpe1"), n_perts=3, n_genes=8, n_cells=12, n_controls=30)
    offsets = {name: np.full(8, 0.1 * (i + 1)) for i, name in enumerate(SHIFT_REFERENCES)}
    shifts = _constant_shifts(real, offsets)
    control = control_reference(real, CONTROL, seed=5)
    perturbed = (control.obs["target_gene"] != CONTROL).to_numpy()
    from ptrag.evaluation.control_draws import BuildContext

    context = BuildContext(CONTROL, seed=5, shifts=shifts)
    for name in SHIFT_REFERENCES:
        pred, target = REFERENCE_REGISTRY[name].build(real, context)
        assert target is real
        assert _counts(pred).equals(_counts(real))  # n-matched
        np.testing.assert_array_equal(pred.obs["control_barcode"], control.obs["control_barcode"])
        expected = np.tile(offsets[name], (perturbed.sum(), 1))
        np.testing.assert_allclose(pred.X[perturbed] - control.X[perturbed], expected, atol=1e-6)
        np.testing.assert_array_equal(pred.X[~perturbed], control.X[~perturbed])


def test_all_ten_references_are_scored_when_every_shift_is_given():
    _, real = make_pair(n_perts=3, n_genes=10)
    shifts = _constant_shifts(real, {name: np.zeros(10) for name in SHIFT_REFERENCES})
    scores = evaluate_references(real, CONTROL, shifts=shifts, include_de=False)
    assert list(scores) == list(REFERENCES) == [
        "control", "train_mean", "perturb_shift", "knn_shift", "linear", "linear_text", "linear_go",
        "linear_coexpression", "evidence_only", "noise_floor",
    ]
    assert "split-half" in REFERENCE_REGISTRY["noise_floor"].note


def test_shifts_for_other_conditions_or_genes_are_refused():
    _, real = make_pair(n_perts=3, n_genes=10)
    shifts = _constant_shifts(real, {"linear": np.zeros(10)})
    fewer = ReferenceShifts(shifts.genes, shifts.conditions[:-1], {"linear": shifts.shifts["linear"][:-1]})
    with pytest.raises(DataError, match="no shifts for the conditions"):
        evaluate_references(real, CONTROL, shifts=fewer)
    renamed = ReferenceShifts(("X", *shifts.genes[1:]), shifts.conditions, shifts.shifts)
    with pytest.raises(DataError, match="differ from the 10 var_names"):
        evaluate_references(real, CONTROL, shifts=renamed)


def test_mean_on_controls_is_the_methods_own_mean_shift_on_the_reference_control_draws():
    pred, real = make_pair(n_perts=3, n_genes=10, pred_effect_scale=1.0)
    perturbed = (pred.obs["target_gene"] != CONTROL).to_numpy()
    noise = np.random.default_rng(3).normal(0.0, 1.0, (int(perturbed.sum()), pred.n_vars))
    pred.X[perturbed] += noise.astype(np.float32)
    scores = evaluate_references(real, CONTROL, include_de=False, prediction=pred, method="st")
    assert list(scores) == ["control", "noise_floor", "st_mean_on_controls"]
    from ptrag.evaluation.control_draws import BuildContext
    from ptrag.evaluation.references import mean_on_controls_pair

    built, _ = mean_on_controls_pair(pred, real, BuildContext(CONTROL), "st")
    control = control_reference(real, CONTROL)
    x_pred, x_real = np.asarray(pred.X), np.asarray(real.X)
    pool = x_real[(real.obs["target_gene"] == CONTROL).to_numpy()].mean(axis=0)
    groups = built.obs.groupby(["cell_type", "target_gene"], observed=True).indices
    for (_, perturbation), rows in groups.items():
        if perturbation == CONTROL:
            continue
        own = x_pred[(pred.obs["target_gene"] == perturbation).to_numpy()].mean(axis=0) - pool
        np.testing.assert_allclose(built.X[rows] - control.X[rows], np.tile(own, (len(rows), 1)), atol=1e-5)
        # Same mean as the method's cells, but each cell is a real control cell.
        np.testing.assert_allclose(built.X[rows].mean(axis=0), own + pool, atol=1e-5)
    # Noise on each predicted cell: the same means on real control cells score better.
    method = evaluate(pred, real, include_de=False, pca=fit_pca_on_real(real))
    assert scores["st_mean_on_controls"].agg.loc["mean", "mmd_gene"] < method.agg.loc["mean", "mmd_gene"]
