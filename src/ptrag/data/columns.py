"""Detect which obs columns and which control label a screen uses (each overridable by the user)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from ptrag.errors import DataError, format_list

__all__ = [
    "BATCH_ALIASES",
    "CELL_TYPE_ALIASES",
    "PERTURBATION_ALIASES",
    "choose_column",
    "choose_control_label",
]

logger = logging.getLogger(__name__)

# The first alias of each role is the Replogle / Arc STATE name; it wins when candidates agree.
PERTURBATION_ALIASES: tuple[str, ...] = ("gene", "target_gene", "perturbation", "condition")
CELL_TYPE_ALIASES: tuple[str, ...] = ("cell_line", "cell_type", "celltype")
BATCH_ALIASES: tuple[str, ...] = ("gem_group", "batch")
CONTROL_LABELS: tuple[str, ...] = ("non-targeting", "control", "ctrl", "NT")


def first_disagreement(a: pd.Series, b: pd.Series) -> tuple[int, int] | None:
    """Two cell positions that show ``a`` and ``b`` partition the cells differently, or None.

    The columns agree when they group the cells identically, whatever the labels (``RPL7`` and
    ``RPL7+ctrl``, ``K562`` and ``k562``). Otherwise one column puts the two returned cells in one
    group and the other column does not.
    """
    codes_a = pd.factorize(a.to_numpy(), use_na_sentinel=False)[0]
    codes_b = pd.factorize(b.to_numpy(), use_na_sentinel=False)[0]
    for first, second in ((codes_a, codes_b), (codes_b, codes_a)):
        # The cell where each group of `first` starts, and whether later cells of that group differ in
        # `second` from it.
        _, starts = np.unique(first, return_index=True)
        start_of = np.empty(first.max() + 1 if first.size else 0, dtype=np.int64)
        start_of[first[starts]] = starts
        reference = start_of[first]
        differs = np.nonzero(second != second[reference])[0]
        if differs.size:
            return int(reference[differs[0]]), int(differs[0])
    return None


def _pick_agreeing(
    role: str,
    found: list[str],
    aliases: Sequence[str],
    option: str,
    read: Callable[[str], pd.Series],
    cell_names: Sequence[str],
) -> str:
    chosen = found[0]  # aliases are ordered with the Replogle/Arc name first
    values = read(chosen)
    for other in found[1:]:
        other_values = read(other)
        pair = first_disagreement(values, other_values)
        if pair is not None:
            cells = [
                f"cell {cell_names[i]!r} has {chosen}={str(values.iloc[i])!r}, "
                f"{other}={str(other_values.iloc[i])!r}"
                for i in pair
            ]
            raise DataError(
                f"obs has two {role} columns that disagree, {chosen!r} and {other!r}: {cells[0]} but "
                f"{cells[1]}. Choose one with {option}."
            )
    why = "the Replogle/Arc name" if chosen == aliases[0] else "the first of the known names"
    logger.info(
        "obs has %s %s columns %s that agree cell by cell; using %r (%s; choose another with %s)",
        len(found),
        role,
        format_list(found),
        chosen,
        why,
        option,
    )
    return chosen


def choose_column(
    role: str,
    override: str | None,
    aliases: Sequence[str],
    present: Sequence[str],
    option: str,
    required: bool = True,
    read: Callable[[str], pd.Series] | None = None,
    cell_names: Sequence[str] = (),
) -> str | None:
    """The column for ``role``: the override if given, else the alias present in obs.

    When several aliases are present and ``read`` (column name → values, one per cell) is given,
    they are compared: if they group the cells identically the first alias wins (the Replogle/Arc
    name when present) with one log line; if they disagree the error names both columns and a
    disagreeing pair of cells. Without ``read`` several candidates are an error.
    """
    if override is not None:
        if override not in present:
            raise DataError(
                f"The {role} column {override!r} given with {option} is not in obs. "
                f"Columns present: {format_list(present, 50)}."
            )
        return override
    found = [alias for alias in aliases if alias in present]
    if len(found) == 1:
        return found[0]
    if len(found) > 1 and read is not None:
        names = list(cell_names) if len(cell_names) else [str(i) for i in range(len(read(found[0])))]
        return _pick_agreeing(role, found, aliases, option, read, names)
    if len(found) > 1:
        raise DataError(
            f"Ambiguous {role} column: obs has {format_list(found)}. Choose one with {option}. "
            f"Columns present: {format_list(present, 50)}."
        )
    if not required:
        return None
    raise DataError(
        f"No {role} column found: expected one of {format_list(aliases)}. "
        f"Columns present: {format_list(present, 50)}. Name the column with {option}."
    )


def labels_by_frequency(values: pd.Series) -> list[str]:
    """The distinct labels of a column, most frequent first (ties alphabetical)."""
    counts = values.astype(str).value_counts()
    ordered = sorted(counts.items(), key=lambda item: (-int(item[1]), str(item[0])))
    return [f"{label} ({count} cells)" for label, count in ordered]


def choose_control_label(override: str | None, perturbations: pd.Series, column: str) -> str:
    """The control label: the override if present in ``column``, else the single known label found."""
    present = set(perturbations.astype(str).unique())
    if override is not None:
        if override not in present:
            raise DataError(
                f"Control label {override!r} (given with --control-label) is not a value of obs column "
                f"{column!r}. Labels present, most frequent first: "
                f"{format_list(labels_by_frequency(perturbations), 15)}."
            )
        return override
    found = [label for label in CONTROL_LABELS if label in present]
    if len(found) == 1:
        return found[0]
    if len(found) > 1:
        raise DataError(
            f"Several control labels in obs column {column!r}: {format_list(found)}. "
            "Choose one with --control-label."
        )
    raise DataError(
        f"No control cells found: obs column {column!r} has none of the known control labels "
        f"{format_list(CONTROL_LABELS)}. Labels present, most frequent first: "
        f"{format_list(labels_by_frequency(perturbations), 15)}. Name your control with --control-label."
    )
