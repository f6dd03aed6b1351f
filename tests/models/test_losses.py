"""The training loss: the unbiased energy distance against geomloss's V-statistic, and where each
is minimised (the V-statistic rewards predicted sets narrower than the truth)."""

from __future__ import annotations

import pytest
import torch

from ptrag.models.losses import SetDistributionLoss, energy_unbiased, stratified_energy


def _reference_energy(x: torch.Tensor, y: torch.Tensor, unbiased: bool) -> torch.Tensor:
    """Half the energy distance from torch.cdist, per set."""
    n, m = x.shape[1], y.shape[1]
    within_x, within_y = torch.cdist(x, x).sum(dim=(1, 2)), torch.cdist(y, y).sum(dim=(1, 2))
    scale_x, scale_y = (n * (n - 1), m * (m - 1)) if unbiased else (n * n, m * m)
    return torch.cdist(x, y).mean(dim=(1, 2)) - 0.5 * (within_x / scale_x + within_y / scale_y)


def test_unbiased_energy_matches_the_u_statistic_and_v_matches_geomloss():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(3, 12, 40, generator=generator, dtype=torch.float64)
    y = torch.randn(3, 17, 40, generator=generator, dtype=torch.float64) + 0.3
    torch.testing.assert_close(energy_unbiased(x, y), _reference_energy(x, y, unbiased=True))
    geomloss = SetDistributionLoss("energy", 0.05).per_set(x, y)
    torch.testing.assert_close(geomloss, _reference_energy(x, y, unbiased=False), rtol=1e-4, atol=1e-5)


def _loss_by_scale(kind: str, scales: list[float]) -> dict[float, float]:
    """Mean loss of S = 32 Gaussian cells in 2,000 genes scaled by s against unit-scale targets."""
    generator = torch.Generator().manual_seed(1)
    target = torch.randn(48, 32, 2000, generator=generator)
    noise = torch.randn(48, 32, 2000, generator=generator)
    loss = SetDistributionLoss(kind, 0.05)
    return {s: float(loss(s * noise, target)) for s in scales}


def test_the_v_statistic_prefers_narrow_sets_and_the_u_statistic_the_true_spread():
    scales = [0.88, 0.94, 1.0, 1.06]
    biased = _loss_by_scale("energy", scales)
    unbiased = _loss_by_scale("energy_unbiased", scales)
    # High-dimensional closed form for S = 32: the V-statistic's optimum is near 0.94 of the truth.
    assert min(biased, key=biased.get) == 0.94
    assert biased[0.94] < biased[1.0] - 0.02
    assert min(unbiased, key=unbiased.get) == 1.0
    assert unbiased[1.0] == pytest.approx(0.0, abs=0.01)


def test_unbiased_energy_has_finite_gradients_with_repeated_cells():
    x = torch.randn(2, 6, 10)
    x = torch.cat([x, x[:, :2]], dim=1).requires_grad_(True)  # duplicates: zero distances
    energy_unbiased(x, torch.randn(2, 5, 10)).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def _two_state_sets(seed: int, n_sets: int = 4, n_cells: int = 32, n_genes: int = 50):
    """Cells of state 0 or 1 (gene 0 tells them apart); only state-0 cells respond (genes 1-5)."""
    generator = torch.Generator().manual_seed(seed)

    def cells(states: torch.Tensor, responds: torch.Tensor) -> torch.Tensor:
        x = torch.randn(n_sets, n_cells, n_genes, generator=generator)
        x[..., 0] += 3.0 * states
        x[..., 1:6] += 2.0 * responds[..., None]
        return x

    target_states = torch.randint(0, 2, (n_sets, n_cells), generator=generator)
    input_states = torch.randint(0, 2, (n_sets, n_cells), generator=generator)
    target = cells(target_states.float(), (target_states == 0).float())
    per_state = cells(input_states.float(), (input_states == 0).float())
    share = (target_states == 0).float().mean(dim=1, keepdim=True).expand(-1, n_cells)
    pooled_shift = cells(input_states.float(), share)
    return target, per_state, pooled_shift, input_states, target_states


def test_stratified_energy_is_the_target_weighted_mean_of_per_stratum_energies():
    target, predicted, _, input_states, target_states = _two_state_sets(0)
    got = stratified_energy(predicted, target, input_states, target_states)
    for b in range(len(target)):
        energies, weights = [], []
        for s in (0, 1):
            x = predicted[b][input_states[b] == s][None]
            y = target[b][target_states[b] == s][None]
            energies.append(float(_reference_energy(x, y, unbiased=True)))
            weights.append(y.shape[1])
        expected = sum(e * w for e, w in zip(energies, weights, strict=True)) / sum(weights)
        assert float(got[b]) == pytest.approx(expected, rel=1e-4, abs=1e-5)


def test_stratified_energy_sees_a_state_dependent_response_the_pooled_energy_barely_sees():
    target, per_state, pooled_shift, input_states, target_states = _two_state_sets(1)
    stratified = {
        name: float(stratified_energy(x, target, input_states, target_states).mean())
        for name, x in (("per_state", per_state), ("pooled", pooled_shift))
    }
    pooled = {
        name: float(energy_unbiased(x, target).mean())
        for name, x in (("per_state", per_state), ("pooled", pooled_shift))
    }
    assert stratified["pooled"] - stratified["per_state"] > 5 * (pooled["pooled"] - pooled["per_state"])
    assert stratified["pooled"] > 0.15 and abs(stratified["per_state"]) < 0.06


def test_stratified_energy_without_strata_is_the_pooled_energy():
    target, predicted, _, _, target_states = _two_state_sets(2)
    none = torch.full(predicted.shape[:2], -1)
    torch.testing.assert_close(
        stratified_energy(predicted, target, none, target_states), energy_unbiased(predicted, target)
    )
