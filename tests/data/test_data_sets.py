"""Cell sets: batch-matched controls, seeding, fixed evaluation sets and collation."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from ptrag.data.loading import load_dataset
from ptrag.data.sets import CellSet, SetSampler, collate
from ptrag.errors import DataError


@pytest.fixture
def dataset(write_screen):
    # Per line: 6 perturbations × 10 cells, 30 controls over 3 gem groups (10 each).
    return load_dataset(write_screen(cells_per_perturbation=10, n_controls=30, n_batches=3))


def _groups(dataset):
    return [(c, p) for c in dataset.cell_types for p in dataset.perturbations(c)]


def _obs(dataset, index, column):
    return dataset.obs[column].to_numpy()[index].astype(str)


def test_training_sets_follow_the_rules(dataset):
    sampler = SetSampler(dataset, _groups(dataset), set_len=8, seed=0)
    sets = sampler.sample(200, np.random.default_rng(1))
    assert len(sets) == 200 and all(isinstance(s, CellSet) for s in sets)
    for cell_set in sets:
        targets, controls = cell_set.target_idx, cell_set.control_idx
        assert targets.dtype == np.int64 and targets.shape == (8,) and controls.shape == (8,)
        assert len(set(targets.tolist())) == 8  # 10 cells ≥ S: no replacement
        assert set(_obs(dataset, targets, "perturbation")) == {cell_set.perturbation}
        assert set(_obs(dataset, targets, "cell_type")) == {cell_set.cell_type}
        assert set(_obs(dataset, controls, "perturbation")) == {"non-targeting"}
        assert set(_obs(dataset, controls, "cell_type")) == {cell_set.cell_type}
        # Each batch has 10 controls ≥ S = 8, so every control comes from its own target's batch,
        # and the set is labelled with the targets' majority batch.
        majority = Counter(_obs(dataset, targets, "batch").tolist()).most_common()
        assert _obs(dataset, controls, "batch").tolist() == _obs(dataset, targets, "batch").tolist()
        assert len(set(controls.tolist())) == 8
        assert cell_set.batch in [b for b, n in majority if n == majority[0][1]]
        assert cell_set.n_real == 8
    assert len({(s.cell_type, s.perturbation) for s in sets}) == 24  # every group gets drawn


def test_controls_fall_back_to_all_batches(dataset):
    sampler = SetSampler(dataset, _groups(dataset), set_len=12, seed=0)  # 10 controls per batch < 12
    for cell_set in sampler.sample(50, np.random.default_rng(0)):
        assert len(set(cell_set.control_idx.tolist())) == 12  # 30 controls of the type: no replacement
        assert set(_obs(dataset, cell_set.control_idx, "cell_type")) == {cell_set.cell_type}
        # 12 distinct controls cannot come from one batch of 10: the pool is the whole cell type.
        assert len(set(_obs(dataset, cell_set.control_idx, "batch"))) >= 2


def test_small_groups_sample_with_replacement(dataset):
    sampler = SetSampler(dataset, _groups(dataset)[:2], set_len=16, seed=0)
    cell_set = sampler.sample(1, np.random.default_rng(0))[0]
    assert cell_set.target_idx.size == 16 and len(set(cell_set.target_idx.tolist())) <= 10
    assert cell_set.n_real == 10


def test_sampling_is_seeded(dataset):
    sampler = SetSampler(dataset, _groups(dataset), set_len=8, seed=0)
    first = sampler.sample(20, np.random.default_rng(42))
    again = sampler.sample(20, np.random.default_rng(42))
    other = sampler.sample(20, np.random.default_rng(43))
    key = lambda sets: [(s.target_idx.tolist(), s.control_idx.tolist()) for s in sets]  # noqa: E731
    assert key(first) == key(again)
    assert key(first) != key(other)


def test_fixed_sets_cover_each_cell_once(dataset):
    groups = _groups(dataset)
    sampler = SetSampler(dataset, groups, set_len=4, seed=7)
    sets = sampler.fixed_sets()
    assert len(sets) == 24 * 3  # 10 cells per group → chunks of 4, 4, 2(+2 wrapped)
    for cell_type, pert in groups:
        mine = [s for s in sets if (s.cell_type, s.perturbation) == (cell_type, pert)]
        real = np.concatenate([s.target_idx[: s.n_real] for s in mine])
        expected = np.flatnonzero(
            ((dataset.obs.cell_type == cell_type) & (dataset.obs.perturbation == pert)).to_numpy()
        )
        assert sorted(real.tolist()) == expected.tolist()
        assert [s.n_real for s in mine] == [4, 4, 2]
        assert set(mine[-1].target_idx[2:].tolist()) <= set(mine[0].target_idx.tolist())  # padding wraps
    again = SetSampler(dataset, groups, set_len=4, seed=7).fixed_sets()
    assert [s.control_idx.tolist() for s in sets] == [s.control_idx.tolist() for s in again]
    changed = SetSampler(dataset, groups, set_len=4, seed=8).fixed_sets()
    assert [s.control_idx.tolist() for s in sets] != [s.control_idx.tolist() for s in changed]
    # A subset of groups gets the same sets as in the full list (seeded per group).
    subset = sampler.fixed_sets(groups[5:6])
    full = [s for s in sets if (s.cell_type, s.perturbation) == groups[5]]
    assert [s.control_idx.tolist() for s in subset] == [s.control_idx.tolist() for s in full]


def test_collate_shapes_and_values(dataset):
    sampler = SetSampler(dataset, _groups(dataset), set_len=5, seed=0)
    sets = sampler.sample(3, np.random.default_rng(0))
    batch = collate(sets, dataset)
    assert batch["control"].shape == (3, 5, dataset.n_genes) and batch["control"].dtype == np.float32
    assert batch["target"].shape == (3, 5, dataset.n_genes) and batch["target"].dtype == np.float32
    assert batch["batch_codes"].shape == (3, 5) and batch["batch_codes"].dtype == np.int64
    np.testing.assert_array_equal(batch["target"][1], dataset.expression.rows(sets[1].target_idx))
    np.testing.assert_array_equal(batch["control"][2], dataset.expression.rows(sets[2].control_idx))
    categories = list(dataset.obs.batch.cat.categories)
    target_batches = _obs(dataset, sets[0].target_idx, "batch").tolist()
    assert [categories[c] for c in batch["batch_codes"][0]] == target_batches
    assert batch["perturbation"] == [s.perturbation for s in sets]
    assert batch["cell_type"] == [s.cell_type for s in sets]


def test_unknown_groups_are_errors(dataset):
    with pytest.raises(DataError, match="k562/G2"):
        SetSampler(dataset, [("k562", "G2")], set_len=4, seed=0)  # k562 has no G2 in the fixture
    sampler = SetSampler(dataset, _groups(dataset)[:1], set_len=4, seed=0)
    with pytest.raises(DataError, match="not among"):
        sampler.fixed_sets([("rpe1", "G1")])


def test_fixed_sets_never_repeat_a_control_within_a_group_while_the_pool_allows(dataset):
    sampler = SetSampler(dataset, _groups(dataset), set_len=4, seed=0)  # 10 cells: three sets per group
    sets = sampler.fixed_sets()
    by_group: dict[tuple[str, str], list[np.ndarray]] = {}
    for cell_set in sets:
        by_group.setdefault((cell_set.cell_type, cell_set.perturbation), []).append(
            cell_set.control_idx[: cell_set.n_real]
        )
    for group, parts in by_group.items():
        controls = np.concatenate(parts)
        assert len(parts) == 3 and controls.size == 10, group
        assert len(set(controls.tolist())) == 10, group  # drawn once for the group, not set by set
        members = [s for s in sets if (s.cell_type, s.perturbation) == group]
        targets = np.concatenate([s.target_idx[: s.n_real] for s in members])
        assert _obs(dataset, controls, "batch").tolist() == _obs(dataset, targets, "batch").tolist()
