"""The run's condition groups: which (cell type, perturbation) groups train, validate and test.

One definition, used by training and by prediction alike: the split's role of every condition the
data has (``dataset.conditions``), restricted to perturbations the run can embed (its vocabulary
under ``embedding.missing``). A group whose perturbation has no embedding is therefore left out of
training and prediction in the same way.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import numpy as np

from ptrag.data.conditions import Group
from ptrag.data.dataset import PerturbationDataset
from ptrag.data.splits import Split

__all__ = ["embeddable", "groups_by_role", "with_validation_groups"]

ROLES = ("train", "val", "test")
# Automatic validation hold-outs use a fixed seed: every arm and every training seed of a benchmark
# then trains on the same groups and validates on the same ones.
VALIDATION_HOLDOUT_SEED = 0


def embeddable(groups: Sequence[Group], vocabulary: Collection[str]) -> list[Group]:
    """The groups whose perturbation the run can embed."""
    known = set(vocabulary)
    return [group for group in groups if group[1] in known]


def groups_by_role(
    dataset: PerturbationDataset, split: Split, vocabulary: Collection[str]
) -> dict[str, list[Group]]:
    """Role → the sorted groups with cells whose perturbation is in ``vocabulary``."""
    by_role: dict[str, list[Group]] = {role: [] for role in ROLES}
    for group in embeddable(dataset.conditions.groups, vocabulary):
        by_role[split.role(*group)].append(group)
    return by_role


def with_validation_groups(
    split: Split, dataset: PerturbationDataset, fraction: float
) -> tuple[Split, list[Group]]:
    """``split`` itself when it has val groups; otherwise a copy that holds out ``fraction`` of the
    training groups (seeded, at least one, never all) as val. Returns the split and the held-out groups."""
    train = split.groups(dataset, "train")
    if fraction <= 0 or split.groups(dataset, "val") or len(train) < 2:
        return split, []
    rng = np.random.default_rng(VALIDATION_HOLDOUT_SEED)
    n_held = min(len(train) - 1, max(1, round(fraction * len(train))))
    held = sorted(train[i] for i in rng.choice(len(train), size=n_held, replace=False))
    fewshot = {
        cell_type: {r: list(lists[r]) for r in ("val", "test")} for cell_type, lists in split.fewshot.items()
    }
    for cell_type, perturbation in held:
        fewshot.setdefault(cell_type, {"val": [], "test": []})["val"].append(perturbation)
    widened = Split(
        name=split.name,
        fewshot={c: {r: sorted(v) for r, v in lists.items()} for c, lists in fewshot.items()},
        zeroshot=split.zeroshot,
        datasets=split.datasets,
        training=split.training,
    )
    return widened, held
