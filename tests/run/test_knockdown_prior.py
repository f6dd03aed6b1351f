"""The knockdown prior learned from the training groups: known fractions, no held-out group, the
pooled fallback, and a round trip through the spec's state."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from ptrag.config import load_config
from ptrag.data.dataset import PerturbationDataset
from ptrag.data.loading import load_dataset
from ptrag.run.knockdown import (
    CELL_TYPE_SOURCE,
    MIN_TARGETS_PER_CELL_TYPE,
    POOLED_SOURCE,
    KnockdownPrior,
)
from ptrag.run.spec import ModelSpec
from ptrag.training.prepare import prepare


@pytest.fixture(scope="module")
def dataset(knockdown_dir: Path) -> PerturbationDataset:
    return load_dataset(knockdown_dir / "data.h5ad")


@pytest.fixture(scope="module")
def prior(dataset, knockdown_screen) -> KnockdownPrior:
    return KnockdownPrior.from_training_groups(dataset, knockdown_screen.split.groups(dataset, "train"))


def test_the_prior_recovers_each_training_targets_known_remaining_fraction(prior, knockdown_screen) -> None:
    screen = knockdown_screen
    # Every training group whose target is a measured gene, and nothing else: 18 in cell type a
    # (26 in-list targets minus 2 val and 6 test), 6 in b; the off-list targets have no row.
    assert prior.counts() == {"a": len(screen.train), "b": 6}
    assert not set(screen.val + screen.test + screen.off_list) & set(prior.perturbations)
    pairs = zip(prior.perturbations, prior.cell_types, strict=True)
    known = np.array([screen.remaining[f"{p}@{c}"] for p, c in pairs])
    # 30 perturbed cells against 300 controls at an expression CV of 0.22: each within ~5 %.
    np.testing.assert_allclose(prior.remaining, known, rtol=0.15)
    assert np.abs(prior.remaining / known - 1).mean() < 0.06
    assert prior.remaining.dtype == np.float32


def test_a_cell_type_with_too_few_targets_draws_from_all_and_never_from_its_own_row(
    prior, knockdown_screen
) -> None:
    assert prior.counts()["b"] < MIN_TARGETS_PER_CELL_TYPE <= prior.counts()["a"]
    of_a = prior.remaining[np.array(prior.cell_types) == "a"]
    values, source = prior.fractions("a", "NEVER")
    assert source == CELL_TYPE_SOURCE
    np.testing.assert_array_equal(values, of_a)
    for cell_type in ("b", "hela"):  # too few targets, and a cell type the run never saw
        values, source = prior.fractions(cell_type, "NEVER")
        assert source == POOLED_SOURCE and len(values) == len(prior)
    # A pair's own measurement is never among its draws (the memory's rule).
    own = knockdown_screen.train[0]
    row = list(zip(prior.perturbations, prior.cell_types, strict=True)).index((own, "a"))
    values, _ = prior.fractions("a", own)
    assert len(values) == len(of_a) - 1 and prior.remaining[row] not in values
    values, _ = prior.fractions("b", own)  # pooled, still without (own, b)
    assert len(values) == len(prior) - 1
    described = prior.describe()
    assert (
        "a 18 targets" in described and "b 6 targets" in described and "pooled over cell types" in described
    )


def test_preparation_gives_every_arm_the_prior_and_the_spec_stores_it(
    dataset, knockdown_screen, caplog
) -> None:
    for arm in ("st", "memory"):
        config = load_config("cpu-small", [f"model.arm={arm}", "retrieval.top_k=8"])
        with caplog.at_level(logging.INFO):
            prepared = prepare(dataset, knockdown_screen.split, config)
        prior = prepared.spec.knockdown
        assert prior is not None and len(prior) == 24
    assert "knockdown prior (target's remaining fraction in expression space): a 18 targets" in caplog.text
    stored = ModelSpec.from_state(prepared.spec.to_state()).knockdown
    assert stored is not None
    assert (stored.perturbations, stored.cell_types) == (prior.perturbations, prior.cell_types)
    np.testing.assert_array_equal(stored.remaining, prior.remaining)
    old = prepared.spec.to_state()
    del old["knockdown"]  # a checkpoint written before the prior existed
    assert ModelSpec.from_state(old).knockdown is None


def test_targets_rarely_detected_in_controls_are_left_out(knockdown_factory, tmp_path: Path) -> None:
    screen = knockdown_factory()
    adata = screen.adata
    # The first target is detected in 5 % of cell type a's 300 control cells: its ratio is noise.
    obs = adata.obs
    controls = np.flatnonzero(((obs["gene"] == "non-targeting") & (obs["cell_line"] == "a")).to_numpy())
    adata.X[controls[15:], 0] = 0.0
    screen.write(tmp_path)
    dataset = load_dataset(tmp_path / "data.h5ad")
    prior = KnockdownPrior.from_training_groups(dataset, screen.split.groups(dataset, "train"))
    pairs = set(zip(prior.perturbations, prior.cell_types, strict=True))
    assert adata.var_names[0] == screen.train[0]
    assert (screen.train[0], "a") not in pairs and (screen.train[0], "b") in pairs
