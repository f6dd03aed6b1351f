"""State gains learned from training groups: known per-state responses recovered, held-out groups
never read, applied without moving a set's mean, and a round trip through the spec's state.

The screen (``tests/conftest.py::make_state_screen``) knows every gain: half the cells are in a
high basal state, visible on a few genes; some genes respond 1.6x there and 0.4x in low-state
cells, others only in low-state cells (gain 2 there, 0 in high-state ones).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ptrag.data.dataset import PerturbationDataset
from ptrag.data.loading import load_dataset
from ptrag.data.sets import CellSet
from ptrag.prediction.state_gain import StateModulation
from ptrag.run.state_gains import MIN_GROUPS_PER_CELL_TYPE, StateGains, gains_from_sums


@pytest.fixture(scope="module")
def dataset(state_screen) -> PerturbationDataset:
    return load_dataset(state_screen.adata)


@pytest.fixture(scope="module")
def gains(dataset, state_screen) -> StateGains:
    return StateGains.from_training_groups(dataset, state_screen.training)


def high_strata(gains: StateGains, state_screen) -> np.ndarray:
    """Whether each stratum's centroid is in the high basal state."""
    fitted = gains.get("a")
    assert fitted is not None
    genes = state_screen.state_genes
    return fitted.centroids[:, genes].mean(axis=1) > fitted.control_mean[genes].mean()


def test_the_gains_recover_how_strongly_each_state_responds(gains, state_screen) -> None:
    fitted = gains.get("a")
    assert fitted is not None and fitted.n_groups == len(state_screen.training)
    high = high_strata(gains, state_screen)
    assert 0 < high.sum() < len(high)  # the four strata split both states
    scaled = fitted.gains[:, state_screen.scaled_genes].mean(axis=1)
    gated = fitted.gains[:, state_screen.gated_genes].mean(axis=1)
    # True gains: 1.6 / 0.4 on the scaled genes, 0 / 2 on the gated ones.
    np.testing.assert_allclose(scaled[high], 1.6, atol=0.15)
    np.testing.assert_allclose(scaled[~high], 0.4, atol=0.15)
    np.testing.assert_allclose(gated[high], 0.0, atol=0.2)
    np.testing.assert_allclose(gated[~high], 2.0, atol=0.2)
    assert f"a {fitted.stratum_gains[0]:.2f}" in gains.describe()
    assert f"({len(state_screen.training)} groups)" in gains.describe()


def test_prepare_learns_the_gains_from_training_groups_only(state_screen) -> None:
    from ptrag.config import load_config
    from ptrag.data.splits import Split
    from ptrag.training.prepare import prepare

    roles = {"a": {"val": ["P12"], "test": [state_screen.held_out]}}
    split = Split(name="s", fewshot=roles, datasets={"s": "x"}, training={"s": "train"})
    config = load_config("cpu-small", ["embedding.missing=zero", "retrieval.top_k=4"])
    with pytest.warns(UserWarning, match="covered by no gene prior"):
        prepared = prepare(load_dataset(state_screen.adata), split, config)
    fitted = prepared.spec.state_gains.get("a")
    assert fitted is not None and fitted.n_groups == state_screen.n_perturbations - 2
    scaled = fitted.gains[:, state_screen.scaled_genes].mean(axis=1)
    # Had the held-out group (reversed, three times as strong) been read, every gain would be near 1.
    assert scaled.max() > 1.4 and scaled.min() < 0.6


def test_a_cell_type_with_too_few_training_groups_learns_nothing(dataset, state_screen) -> None:
    gains = StateGains.from_training_groups(dataset, state_screen.training[: MIN_GROUPS_PER_CELL_TYPE - 1])
    assert gains.get("a") is None and "no cell type" in gains.describe()


def test_modulation_spreads_the_response_by_state_and_keeps_the_set_mean(
    dataset, gains, state_screen
) -> None:
    controls = dataset.conditions.controls("a")[:32]
    values = torch.from_numpy(dataset.expression.rows(controls).astype(np.float32))[None]
    response = torch.linspace(-0.5, 0.5, state_screen.n_genes)
    predicted = values + response  # every cell the same response: a mean shift
    cell_set = CellSet("a", "P0", "a_0", np.arange(32), controls, 32)
    anchor = values.mean(dim=1)  # an unanchored model: the response adds to x itself
    moved = predicted.clone()
    StateModulation(gains).apply([cell_set], values, moved, anchor)
    np.testing.assert_allclose(moved.mean(dim=1).numpy(), predicted.mean(dim=1).numpy(), atol=1e-5)
    is_high = high_strata(gains, state_screen)[gains.get("a").strata_of(values[0].numpy())]
    genes = state_screen.scaled_genes
    share = (moved - values)[0, :, genes] / response[genes]
    # High-state cells now carry more of the response than low-state ones, on the scaled genes.
    assert share[is_high].mean() > 1.2 and share[~is_high].mean() < 0.8


def test_the_gains_survive_the_spec_round_trip(gains) -> None:
    restored = StateGains.from_state(gains.to_state())
    for name in ("centroids", "components", "control_mean", "gains", "stratum_gains"):
        np.testing.assert_array_equal(getattr(restored.get("a"), name), getattr(gains.get("a"), name))
    assert restored.get("a").n_groups == gains.get("a").n_groups


def test_a_stratum_no_training_group_reached_keeps_the_response() -> None:
    # Stratum 0: two genes with evidence (gains 2 and 0.5, pooled 1.25); stratum 1: none at all.
    numerator = np.array([[2.0, 0.5, 0.0], [0.0, 0.0, 0.0]])
    denominator = np.array([[1.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    gains, pooled = gains_from_sums(numerator, denominator)
    np.testing.assert_allclose(pooled, [1.25, 1.0])
    # Median denominator 1: gene 0 (2 + 1.25) / 2, gene 1 (0.5 + 1.25) / 2, gene 2 its stratum's gain.
    np.testing.assert_allclose(gains[0], [1.625, 0.875, 1.25])
    np.testing.assert_allclose(gains[1], [1.0, 1.0, 1.0])
