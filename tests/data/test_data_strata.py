"""Basal-state strata of a screen's cells: controls clustered, perturbed cells assigned on the genes
their perturbation leaves alone, nothing else labelled."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ptrag.data.dataset import ColumnMapping, PerturbationDataset
from ptrag.data.expression import DenseExpression
from ptrag.data.strata import cell_strata

CONTROL = "non-targeting"
N_GENES = 30


def _screen(seed: int = 0) -> tuple[PerturbationDataset, np.ndarray]:
    """One cell type; state 1 raises genes 0-4 by 4; P1 raises genes 10-14 by 6 in every cell and P2
    is a held-out group; returns the dataset and every cell's true state."""
    rng = np.random.default_rng(seed)
    labels, states, rows = [], [], []
    for label, n in ((CONTROL, 200), ("P1", 80), ("P2", 40)):
        state = (rng.random(n) < 0.5).astype(int)
        x = rng.normal(0.0, 1.0, (n, N_GENES)) + 5.0
        x[:, :5] += 4.0 * state[:, None]
        if label == "P1":
            x[:, 10:15] += 6.0
        labels += [label] * n
        states.append(state)
        rows.append(x)
    obs = pd.DataFrame(
        {
            "perturbation": pd.Categorical(labels),
            "cell_type": pd.Categorical(["k562"] * len(labels)),
            "batch": pd.Categorical(["b0"] * len(labels)),
        },
        index=[f"cell{i}" for i in range(len(labels))],
    )
    dataset = PerturbationDataset(
        DenseExpression(np.vstack(rows).astype(np.float32)),
        tuple(f"g{i}" for i in range(N_GENES)),
        obs,
        ColumnMapping("gene", "cell_line", None, CONTROL),
    )
    return dataset, np.concatenate(states)


def test_controls_and_the_given_groups_get_strata_that_follow_the_basal_state():
    dataset, state = _screen()
    labels = cell_strata(dataset, [("k562", "P1")])
    perturbation = dataset.obs["perturbation"].astype(str).to_numpy()
    assert (labels[perturbation == "P2"] == -1).all()  # not asked for: unlabelled
    labelled = perturbation != "P2"
    assert (labels[labelled] >= 0).all() and labels.max() <= 3
    # Every stratum holds cells of one state only: the strata split the states, never mix them.
    for stratum in np.unique(labels[labelled]):
        in_stratum = labelled & (labels == stratum)
        assert len(np.unique(state[in_stratum])) == 1
    # P1's response (genes 10-14) does not move its cells away from the strata of their state.
    controls = perturbation == CONTROL
    control_state_of = {s: state[controls & (labels == s)][0] for s in np.unique(labels[controls])}
    p1 = perturbation == "P1"
    assert all(control_state_of[s] == t for s, t in zip(labels[p1], state[p1], strict=True))


def test_a_cell_types_strata_are_fitted_once_per_dataset_and_shared(monkeypatch) -> None:
    """Training's stratified loss and the state gains read the same strata; a benchmark's arms share
    one dataset, so the k-means runs once per cell type, and the labels are those of a fresh fit."""
    import ptrag.data.strata as strata_module
    from ptrag.data.strata import control_strata, fit_strata, strata_controls

    dataset, _ = _screen()
    fits = {"n": 0}
    original = strata_module.fit_strata

    def counted(controls, *args, **kwargs):
        fits["n"] += 1
        return original(controls, *args, **kwargs)

    monkeypatch.setattr(strata_module, "fit_strata", counted)
    first = control_strata(dataset, "k562")
    labels = cell_strata(dataset, [("k562", "P1")])
    assert control_strata(dataset, "k562") is first and fits["n"] == 1
    fresh = fit_strata(dataset.expression.rows(strata_controls(dataset, "k562")))
    np.testing.assert_array_equal(first.centroids, fresh.centroids)
    controls = dataset.conditions.controls("k562")
    np.testing.assert_array_equal(labels[controls], first.control_labels)
    # Another dataset object fits its own.
    control_strata(_screen()[0], "k562")
    assert fits["n"] == 2
