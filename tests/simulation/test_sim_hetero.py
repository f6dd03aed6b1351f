"""State-dependent responses (the replogle-hetero / tiny-hetero presets) and the oracles."""

from __future__ import annotations

import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from anndata.io import read_elem

from ptrag.data.strata import assign_strata, fit_strata
from ptrag.evaluation.references import control_reference
from ptrag.simulation import SimulationResult
from ptrag.simulation.api import build_screen_model
from ptrag.simulation.cells import STATE_COLUMN, design_cells, encode_chunk, sample_counts
from ptrag.simulation.expectation import conditional_shifts, true_shifts
from ptrag.simulation.genes import select_genes
from ptrag.simulation.model import build_model
from ptrag.simulation.oracle import (
    ORACLE_METRICS,
    _real_cells,
    load_screen_model,
    oracle_prediction,
    oracle_predictions,
    oracle_report,
)
from ptrag.simulation.presets import StateParams, get_preset
from ptrag.simulation.states import HIGH, LOW, attach_states, state_nodes

from .standin import standin_gene_table


def _obs_and_x(result: SimulationResult) -> tuple[pd.DataFrame, np.ndarray]:
    with h5py.File(result.data_path, "r") as handle:
        return read_elem(handle["obs"]), handle["obsm/X_hvg"][:]


def test_every_cell_has_a_state_visible_in_its_control_expression(tiny_hetero_screen) -> None:
    obs, x = _obs_and_x(tiny_hetero_screen)
    state = obs[STATE_COLUMN].to_numpy()
    assert np.all((state >= 0) & (state <= 1)) and state.std() > 0.3  # Beta(0.5, 0.5): mostly near 0, 1
    for line in ("k562", "rpe1", "jurkat"):
        controls = ((obs["cell_line"] == line) & (obs["gene"] == "non-targeting")).to_numpy()
        centred = x[controls] - x[controls].mean(0)
        pc1 = centred @ np.linalg.svd(centred, full_matrices=False)[2][0]
        assert abs(np.corrcoef(pc1, state[controls])[0, 1]) > 0.6, line


def test_models_do_not_read_the_state_column(tiny_hetero_screen) -> None:
    from ptrag.data.loading import load_dataset

    dataset = load_dataset(tiny_hetero_screen.data_path)
    assert STATE_COLUMN not in dataset.obs.columns
    used = dataset.columns
    assert (used.perturbation, used.cell_type, used.batch) == ("gene", "cell_line", "gem_group")


def test_replogle_like_has_no_state() -> None:
    assert get_preset("replogle-like").state is None
    assert get_preset("replogle-hetero").state is not None


def _hetero_model(seed: int = 0, **changes: object):
    preset = get_preset("tiny").with_overrides(state=StateParams(twin_lines=()), **changes)
    rng = np.random.default_rng(seed)
    model = build_model(preset, select_genes(standin_gene_table(), preset, rng), rng)
    return attach_states(model, rng), rng


def test_escape_and_strength_depend_on_the_state() -> None:
    model, rng = _hetero_model(cells_per_perturbation=(200, 200))
    design = design_cells(model, rng)
    perturbed = design.condition >= 0
    low, high = perturbed & (design.state < 0.3), perturbed & (design.state > 0.7)
    escape_low, escape_high = (design.strength[low] == 0).mean(), (design.strength[high] == 0).mean()
    assert escape_low > 2 * escape_high  # escape x (1 + 0.8 (1 - 2s)): ~1.6x vs ~0.4x the base rate
    strength_low = design.strength[low][design.strength[low] > 0].mean()
    strength_high = design.strength[high][design.strength[high] > 0].mean()
    assert strength_high > 1.6 * strength_low  # 1 + 0.5 (2s - 1): ~0.6 vs ~1.4


def test_twin_lines_share_responses_and_other_lines_transfer_partly() -> None:
    model = build_screen_model("tiny-hetero", 0)
    conditions = model.conditions
    row = {
        (c, p): i
        for i, (c, p) in enumerate(zip(conditions["cell_line"], conditions["perturbation"], strict=True))
    }
    shared = [p for (c, p) in row if c == "jurkat" and ("k562", p) in row]
    assert shared
    for p in shared:
        twin, source = row[("jurkat", p)], row[("k562", p)]
        assert np.array_equal(model.downstream_lfc[twin], model.downstream_lfc[source])
        assert np.array_equal(model.states.gated[twin], model.states.gated[source])
    gates = model.states.gates
    lines = list(model.lines)
    assert np.array_equal(gates[:, lines.index("jurkat")], gates[:, lines.index("k562")])
    same = (gates[:, lines.index("rpe1")] == gates[:, lines.index("k562")]).mean()
    assert 0.3 < same < 0.95  # partial: about half the gates redrawn, some redraws land on the same
    assert ((gates == HIGH).mean() > 0.1) and ((gates == LOW).mean() > 0.1)


def test_truth_is_the_state_average_of_the_conditional_shifts() -> None:
    model, _ = _hetero_model()
    uniform = np.full(model.preset.n_batches_per_line, 1.0 / model.preset.n_batches_per_line)
    rows = np.nonzero(model.conditions["cell_line"].to_numpy() == "k562")[0][:6]
    nodes, weights = state_nodes(model.states.params)
    conditional = conditional_shifts(model, rows, 0, uniform, nodes)
    truth = true_shifts(model, np.stack([uniform] * len(model.lines)))[rows]
    np.testing.assert_allclose(np.tensordot(weights, conditional, axes=1), truth, atol=1e-5)
    # The downstream response (the target's own knock-down left out) differs between s = 0 and s = 1:
    # strength, escape and gated programs all depend on s.
    ends = conditional_shifts(model, rows, 0, uniform, np.array([0.0, 1.0]))
    target = model.conditions["target_measured_index"].to_numpy()[rows]
    for i in np.nonzero(target >= 0)[0]:
        for a in (truth, ends[0], ends[1]):
            a[i, target[i]] = 0.0
    moving = np.abs(truth).sum(1) > 1.0
    assert moving.sum() >= 2
    differ = np.abs(ends[1] - ends[0]).sum(1) / np.abs(truth).sum(1)
    assert np.all(differ[moving] > 0.5)


def test_truth_matches_sampled_cells_overall_and_per_state() -> None:
    model, rng = _hetero_model(
        seed=3,
        cell_lines=("k562",),
        n_perturbations_per_line=3,
        cells_per_perturbation=(4000, 4000),
        control_fraction=0.5,
    )
    design = design_cells(model, rng)
    blocks = [
        sample_counts(model, design, s, min(s + 4096, design.n_cells), 11, i)
        for i, s in enumerate(range(0, design.n_cells, 4096))
    ]
    expression = sp.vstack([encode_chunk(b)[1] for b in blocks]).toarray()
    uniform = np.full(model.preset.n_batches_per_line, 1.0 / model.preset.n_batches_per_line)
    truth = true_shifts(model, uniform[None, :])
    control = design.condition == -1
    low_state = design.state < 0.15
    for k in range(len(model.conditions)):
        cells = design.condition == k
        observed = expression[cells].mean(0) - expression[control].mean(0)
        assert np.abs(observed - truth[k]).mean() < 0.02
        # Cells of low state only, against the controls of low state: E[perturbed | s] − E[control | s]
        # averaged over those cells' states (each cell's own s, from a fine grid).
        grid = np.linspace(0.0, 0.15, 7)
        at_grid = conditional_shifts(model, np.array([k]), 0, uniform, grid)[:, 0]
        states = design.state[cells & low_state]
        expected = at_grid[np.abs(states[:, None] - grid[None, :]).argmin(1)].mean(0)
        observed = expression[cells & low_state].mean(0) - expression[control & low_state].mean(0)
        assert np.abs(observed - expected).mean() < 0.03
        if np.abs(truth[k]).mean() > 0.05:  # a clear response: low-state cells respond differently
            assert np.abs(expected - truth[k]).mean() > 2 * np.abs(observed - expected).mean()


def test_oracles_have_a_predictions_layout_and_the_right_shifts(tiny_hetero_screen) -> None:
    real = _real_cells(tiny_hetero_screen.out_dir, "test", "split")
    model = load_screen_model(tiny_hetero_screen.out_dir)
    control = control_reference(real, "non-targeting")
    per_cell = oracle_prediction(tiny_hetero_screen.out_dir, real, "per_cell", model=model)
    mean_shift = oracle_prediction(tiny_hetero_screen.out_dir, real, "mean_shift")
    truth = pd.read_parquet(tiny_hetero_screen.truth_path).set_index(["cell_line", "perturbation"])
    for pred in (per_cell, mean_shift):
        assert list(pred.obs.columns) == list(control.obs.columns)
        assert {"target_gene", "cell_type", "control_barcode"} <= set(pred.obs.columns)
        assert np.array_equal(pred.obs["control_barcode"], control.obs["control_barcode"])
        assert list(pred.var_names) == list(real.var_names)
    is_ctrl = (control.obs["target_gene"] == "non-targeting").to_numpy()
    np.testing.assert_array_equal(per_cell.X[is_ctrl], control.X[is_ctrl])
    genes = list(real.var_names)
    keys = control.obs[["cell_type", "target_gene"]].astype(str).to_numpy()
    obs, _ = _obs_and_x(tiny_hetero_screen)
    states = obs[STATE_COLUMN].loc[control.obs["control_barcode"].astype(str)].to_numpy()
    spreads = []
    for c, p in {tuple(k) for k in keys[~is_ctrl]}:
        rows = np.nonzero((keys[:, 0] == c) & (keys[:, 1] == p))[0]
        expected = truth.loc[(c, p), genes].to_numpy()
        np.testing.assert_allclose((mean_shift.X[rows] - control.X[rows]).mean(0), expected, atol=1e-5)
        shift = per_cell.X[rows] - control.X[rows]
        spreads.append(np.abs(shift - shift.mean(0)).mean())
        # Cells of opposite states get different shifts when the condition responds at all.
        if np.abs(expected).sum() > 1.0 and (states[rows] < 0.2).any() and (states[rows] > 0.8).any():
            low = shift[states[rows] < 0.2].mean(0)
            high = shift[states[rows] > 0.8].mean(0)
            assert np.abs(high - low).sum() > 0.1 * np.abs(expected).sum()
    assert max(spreads) > 0.01


def test_the_per_stratum_oracle_averages_the_per_cell_shifts_within_each_stratum(tiny_hetero_screen) -> None:
    real = _real_cells(tiny_hetero_screen.out_dir, "test", "split")
    model = load_screen_model(tiny_hetero_screen.out_dir)
    control = control_reference(real, "non-targeting")
    per_cell = oracle_prediction(tiny_hetero_screen.out_dir, real, "per_cell", model=model)
    per_stratum = oracle_prediction(tiny_hetero_screen.out_dir, real, "per_stratum", model=model)
    assert np.array_equal(per_stratum.obs["control_barcode"], control.obs["control_barcode"])
    keys = control.obs[["cell_type", "target_gene"]].astype(str).to_numpy()
    is_ctrl = keys[:, 1] == "non-targeting"
    np.testing.assert_array_equal(per_stratum.X[is_ctrl], control.X[is_ctrl])
    real_ctrl = real.obs["target_gene"].to_numpy() == "non-targeting"
    n_split = 0
    for c, p in {tuple(k) for k in keys[~is_ctrl]}:
        rows = np.nonzero((keys[:, 0] == c) & (keys[:, 1] == p))[0]
        line_controls = real_ctrl & (real.obs["cell_type"] == c).to_numpy()
        strata = fit_strata(np.asarray(real.X[line_controls], dtype=np.float64))
        labels = assign_strata(strata, real[control.obs["control_barcode"].to_numpy()[rows]].X)
        cell_shift = per_cell.X[rows] - control.X[rows]
        stratum_shift = per_stratum.X[rows] - control.X[rows]
        for stratum in np.unique(labels):
            chosen = labels == stratum
            # one shift per stratum: the per-cell oracle's mean over the condition's cells there
            expected = np.broadcast_to(cell_shift[chosen].mean(0), stratum_shift[chosen].shape)
            np.testing.assert_allclose(stratum_shift[chosen], expected, atol=1e-5)
        n_split += len(np.unique(labels)) > 1
        np.testing.assert_allclose(stratum_shift.mean(0), cell_shift.mean(0), atol=1e-5)
    assert n_split > 0  # conditions whose cells fall in several strata get several shifts


def test_oracles_asked_together_equal_each_asked_alone(tiny_hetero_screen) -> None:
    real = _real_cells(tiny_hetero_screen.out_dir, "test", "split")
    model = load_screen_model(tiny_hetero_screen.out_dir)
    kinds = ("per_stratum", "mean_shift", "per_cell")
    together = oracle_predictions(tiny_hetero_screen.out_dir, real, kinds, model=model)
    assert list(together) == ["per_stratum", "mean_shift", "per_cell"]
    for kind, pred in together.items():
        alone = oracle_prediction(tiny_hetero_screen.out_dir, real, kind, model=model)
        assert list(pred.obs_names) == list(alone.obs_names)
        assert pred.obs_names[0].startswith(f"oracle_{kind}")
        np.testing.assert_array_equal(pred.X, alone.X)
    # The two state oracles are different predictions, not one object under two names.
    assert not np.array_equal(together["per_cell"].X, together["per_stratum"].X)


def test_oracle_rows_give_the_per_cell_oracle_the_edge_on_energy_strata(tiny_hetero_screen) -> None:
    report = oracle_report(tiny_hetero_screen.out_dir)
    rows = report["rows"]
    assert set(rows) == {"control", "oracle_mean_shift", "oracle_per_cell", "oracle_per_stratum"}
    assert set(rows["control"]) == set(ORACLE_METRICS)
    for name in ("oracle_mean_shift", "oracle_per_cell"):
        assert rows[name]["energy_gene"] < rows["control"]["energy_gene"]
        assert rows[name]["pearson_delta"] > 0.4
    assert report["gap_mean_shift_minus_per_cell"]["energy_strata"] > 0
    # Knowing each perturbation's response stratum by stratum takes most of the way to the per-cell oracle.
    assert rows["oracle_per_stratum"]["energy_strata"] < rows["oracle_mean_shift"]["energy_strata"] - 0.03
    assert report["per_cell_wins_share"]["energy_strata"] > 0.5


def test_the_per_cell_oracle_needs_a_state(tiny_screen) -> None:
    from ptrag.errors import DataError

    real = _real_cells(tiny_screen.out_dir, "test", "split")
    with pytest.raises(DataError, match="basal state"):
        oracle_prediction(tiny_screen.out_dir, real, "per_cell")
    with pytest.raises(DataError, match="per_cell and per_stratum oracles need a preset with a basal state"):
        oracle_predictions(tiny_screen.out_dir, real)
    with pytest.raises(ValueError, match="'per_gene'"):
        oracle_predictions(tiny_screen.out_dir, real, ("mean_shift", "per_gene"))
    # Without states the mean-shift oracle still works on its own.
    assert oracle_predictions(tiny_screen.out_dir, real, ("mean_shift",))["mean_shift"].n_obs == real.n_obs
