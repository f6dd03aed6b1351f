"""The benchmark's two splits of a simulated screen.

- few-shot (``split.toml``), as in the paper: per cell line, a share of its perturbations is held
  out for validation and test; the same perturbations may train in the other lines;
- unseen (``split_unseen.toml``), GEARS-style: a share of the screen's perturbations is held out of
  every cell line, by :func:`ptrag.data.splits.generate_unseen` (the rule of ``ptrag split --mode
  unseen``), so no cell of a test perturbation trains anywhere.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import cast

import numpy as np

from ptrag.data.dataset import PerturbationDataset
from ptrag.data.splits import Split, generate_unseen
from ptrag.simulation.presets import SimulationPreset

__all__ = ["fewshot_split", "unseen_split"]


def fewshot_split(
    line_targets: Mapping[str, Sequence[str]],
    preset: SimulationPreset,
    rng: np.random.Generator,
    dataset_name: str = "simulated",
    data_file: str = "data.h5ad",
) -> Split:
    """For each line: ``val_fraction`` of its perturbations to val, ``test_fraction`` to test."""
    fewshot: dict[str, dict[str, list[str]]] = {}
    for line in preset.cell_lines:
        perts = sorted(line_targets[line])
        order = rng.permutation(len(perts))
        n_val = max(1, round(preset.val_fraction * len(perts)))
        n_test = max(1, round(preset.test_fraction * len(perts)))
        fewshot[line] = {
            "val": sorted(perts[i] for i in order[:n_val]),
            "test": sorted(perts[i] for i in order[n_val : n_val + n_test]),
        }
    return Split(
        name=dataset_name,
        fewshot=fewshot,
        datasets={dataset_name: data_file},
        training={dataset_name: "train"},
    )


class _ScreenTargets:
    """What :func:`generate_unseen` reads of a dataset, from the design alone (no cells loaded)."""

    def __init__(self, line_targets: Mapping[str, Sequence[str]], source: str) -> None:
        self._targets = {line: sorted(set(perts)) for line, perts in line_targets.items()}
        self.source = source

    @property
    def cell_types(self) -> list[str]:
        return sorted(self._targets)

    def perturbations(self, cell_type: str | None = None) -> list[str]:
        if cell_type is not None:
            return list(self._targets[cell_type])
        return sorted({p for perts in self._targets.values() for p in perts})


def unseen_split(
    line_targets: Mapping[str, Sequence[str]],
    preset: SimulationPreset,
    seed: int,
    dataset_name: str = "simulated",
    data_file: str = "data.h5ad",
) -> Split:
    """The screen's unseen split: the same as ``ptrag split --mode unseen`` on the written file with
    the preset's val/test fractions, ``--seed seed`` and ``--name dataset_name``."""
    screen = cast(PerturbationDataset, _ScreenTargets(line_targets, data_file))
    return generate_unseen(screen, preset.val_fraction, preset.test_fraction, seed, name=dataset_name)
