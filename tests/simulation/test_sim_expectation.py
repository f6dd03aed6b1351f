"""The analytic truth: NB expectations and whole-condition means against Monte-Carlo cells."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from ptrag.simulation.cells import design_cells, encode_chunk, sample_counts
from ptrag.simulation.expectation import expected_log1p, true_shifts
from ptrag.simulation.genes import select_genes
from ptrag.simulation.model import THETA_LEVELS, build_model
from ptrag.simulation.presets import get_preset

from .standin import standin_gene_table


@pytest.mark.parametrize(
    ("mean", "scale", "level"),
    [(0.02, 1.5, 0), (0.7, 2.0, 3), (6.0, 0.8, 5), (150.0, 0.3, 1), (4000.0, 0.1, 8)],
)
def test_expected_log1p_matches_sampling(mean: float, scale: float, level: int) -> None:
    theta = THETA_LEVELS[level]
    rng = np.random.default_rng(level)
    draws = rng.poisson(rng.gamma(theta, mean / theta, size=400_000))
    sampled = np.log1p(scale * draws)
    exact = expected_log1p(np.array([mean]), np.array([scale]), np.array([level]))[0]
    assert abs(exact - sampled.mean()) < 4 * sampled.std() / np.sqrt(len(sampled)) + 2e-3


def test_true_shift_matches_many_sampled_cells() -> None:
    """With thousands of cells per condition the observed mean shift converges to the truth."""
    preset = get_preset("tiny").with_overrides(
        cell_lines=("k562",),
        n_perturbations_per_line=3,
        cells_per_perturbation=(4000, 4000),
        control_fraction=0.5,
    )
    rng = np.random.default_rng(3)
    selection = select_genes(standin_gene_table(), preset, rng)
    model = build_model(preset, selection, rng)
    design = design_cells(model, rng)
    blocks = [
        sample_counts(model, design, s, min(s + 4096, design.n_cells), 11, i)
        for i, s in enumerate(range(0, design.n_cells, 4096))
    ]
    expression = sp.vstack([encode_chunk(b)[1] for b in blocks]).toarray()
    uniform = np.full((1, preset.n_batches_per_line), 1.0 / preset.n_batches_per_line)
    truth = true_shifts(model, uniform)
    control = expression[design.condition == -1]
    for k in range(len(model.conditions)):
        cells = expression[design.condition == k]
        observed = cells.mean(0) - control.mean(0)
        se = np.sqrt(cells.var(0) / len(cells) + control.var(0) / len(control)) + 1e-4
        z = (observed - truth[k]) / se
        assert np.mean(np.abs(z) < 4) > 0.99, f"condition {k}: truth disagrees with sampled cells"
        assert np.abs(observed - truth[k]).mean() < 0.02
