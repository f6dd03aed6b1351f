"""The benchmark's few-shot split, as in the paper: per cell line, a share of its perturbations is
held out for validation and test; the same perturbations may train in the other lines."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ptrag.data.splits import Split
from ptrag.simulation.presets import SimulationPreset


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
