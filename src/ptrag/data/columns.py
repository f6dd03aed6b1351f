"""Detect which obs columns and which control label a screen uses (each overridable by the user)."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from ptrag.errors import DataError, format_list

PERTURBATION_ALIASES: tuple[str, ...] = ("gene", "target_gene", "perturbation", "condition")
CELL_TYPE_ALIASES: tuple[str, ...] = ("cell_line", "cell_type", "celltype")
BATCH_ALIASES: tuple[str, ...] = ("gem_group", "batch")
CONTROL_LABELS: tuple[str, ...] = ("non-targeting", "control", "ctrl", "NT")


def choose_column(
    role: str,
    override: str | None,
    aliases: Sequence[str],
    present: Sequence[str],
    option: str,
    required: bool = True,
) -> str | None:
    """The column for ``role``: the override if given, else the single alias present in obs."""
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
