"""Checks on expression values and on the screen's design, each failing with one clear message."""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ptrag.data.dataset import CELL_TYPE, PERTURBATION
from ptrag.errors import DataError, format_list

__all__ = ["check_block", "check_structure", "control_only_warnings", "small_group_warnings"]


def _first_bad_row(block: np.ndarray | sp.csr_matrix, bad: np.ndarray) -> int:
    """Row (within the block) of the first flagged value; ``bad`` is over the stored values."""
    position = int(np.argmax(bad))
    if sp.issparse(block):
        return int(np.searchsorted(block.indptr, position, side="right") - 1)
    return position // max(1, block.shape[1])


def check_block(
    block: np.ndarray | sp.csr_matrix, start: int, key: str, raw: bool, label: str = ""
) -> float:
    """Validate one row chunk (``raw``: it must hold integer counts); return its largest value.
    ``label`` names the file in the raw-counts message."""
    values = block.data if sp.issparse(block) else np.asarray(block).ravel()
    if values.size == 0:
        return 0.0
    finite = np.isfinite(values)
    if not finite.all():
        row = start + _first_bad_row(block, ~finite)
        raise DataError(
            f"{key} has NaN or infinite values (first in cell row {row}). ptrag needs finite expression: "
            "remove or impute those cells before loading."
        )
    negative = values < 0
    if negative.any():
        row = start + _first_bad_row(block, negative)
        raise DataError(
            f"{key} has negative values (min {float(values.min()):.3g}, first in cell row {row}), but "
            "log1p-normalised expression is never negative. Was it scaled (sc.pp.scale) or centred? "
            "Give ptrag the unscaled log1p data or raw counts."
        )
    if raw:
        fractional = values != np.round(values)
        if fractional.any():
            row = start + _first_bad_row(block, fractional)
            value = float(values[np.argmax(fractional)])
            where = f"{key} of {label}" if label else key
            raise DataError(
                f"{where} looks like raw counts (integers), but cell row {row} has a non-integer value "
                f"({value:.6g}). Give either raw counts or log1p-normalised data, not a mix."
            )
    return float(values.max())


def check_structure(obs: pd.DataFrame, control_label: str) -> None:
    """Every cell type needs control cells: sets pair perturbed cells with controls of their type."""
    is_control = (obs[PERTURBATION] == control_label).to_numpy()
    types = obs[CELL_TYPE].cat.categories
    with_control = set(obs[CELL_TYPE][is_control].astype(str).unique())
    lacking = [str(t) for t in types if str(t) not in with_control]
    if lacking:
        raise DataError(
            f"Cell type(s) {format_list(lacking)} have no control cells (label {control_label!r}). "
            "Each cell type needs controls to pair with its perturbed cells: add them, drop those cell "
            "types, or name the right label with --control-label."
        )


def control_only_warnings(obs: pd.DataFrame, control_label: str) -> list[str]:
    """Cell types with controls but no perturbed cells add nothing to train or evaluate on."""
    perturbed = obs[CELL_TYPE][(obs[PERTURBATION] != control_label).to_numpy()]
    empty = [str(t) for t in obs[CELL_TYPE].cat.categories if str(t) not in set(perturbed.astype(str))]
    if not empty:
        return []
    return [f"Cell type(s) {format_list(empty)} have only control cells; no sets can be drawn for them."]


def small_group_warnings(obs: pd.DataFrame, control_label: str, set_len: int) -> list[str]:
    """Warn about (cell type, perturbation) groups and control pools smaller than one set."""
    from ptrag.data.conditions import Conditions

    messages: list[str] = []
    counts = pd.Series(Conditions.of(obs, control_label).sizes())
    perturbed = counts[[p != control_label for _, p in counts.index]]
    small = perturbed[perturbed < set_len].sort_values()
    if len(small):
        examples = [f"{c}/{p} ({n} cells)" for (c, p), n in small.head(5).items()]
        messages.append(
            f"{len(small)} of {len(perturbed)} (cell type, perturbation) groups have fewer cells than the "
            f"set size {set_len} (smallest: {', '.join(examples)}). Their sets are sampled with "
            "replacement, so some cells repeat within a set."
        )
    controls = counts[[p == control_label for _, p in counts.index]]
    few = controls[controls < set_len]
    if len(few):
        examples = [f"{c} ({n})" for (c, _), n in few.items()]
        messages.append(
            f"Cell type(s) {', '.join(examples)} have fewer control cells than the set size {set_len}; "
            "their controls are sampled with replacement."
        )
    return messages
