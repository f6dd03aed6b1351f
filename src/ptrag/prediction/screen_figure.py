"""The screen's figure: genes ranked by predicted effect, and effect against the evidence behind it."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: never needs a display

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ptrag.io import atomic_path

__all__ = ["COLOURS", "write_screen_figure"]

LABELLED_GENES = 8
# Drawn in this order, so the few measured genes stay on top of the many others.
COLOURS = {"low evidence": "#9a9a9a", "supported": "#1f77b4", "measured": "#d62728"}


def _evidence_class(table: pd.DataFrame) -> np.ndarray:
    return np.where(
        table["measured_in_training"],
        "measured",
        np.where(table["low_evidence"], "low evidence", "supported"),
    )


def write_screen_figure(table: pd.DataFrame, path: Path, cutoff: float) -> None:
    """screen.png: left, the ranked effect by rank (top genes named), with its 90 % interval;
    right, the same effect against the cosine to the nearest measured perturbation, with the
    low-evidence cut-off. The ranked effect is ``expected_effect`` where the screen has it."""
    calibrated = "expected_effect" in table and bool(table["expected_effect"].notna().any())
    column = "expected_effect" if calibrated else "effect_size"
    figure, (ranked, evidence) = plt.subplots(1, 2, figsize=(11, 4.2))
    if calibrated:
        bounds = (table["effect_low"], table["effect_high"])
        ranked.fill_between(table["rank"], *bounds, color="#dddddd", lw=0, label="90% interval")
    classes = _evidence_class(table)
    for name, colour in COLOURS.items():
        chosen = classes == name
        if not chosen.any():
            continue
        label = f"{name} ({int(chosen.sum())})"
        ranked.scatter(table["rank"][chosen], table[column][chosen], s=6, c=colour, label=label)
        evidence.scatter(table["nearest_cosine"][chosen], table[column][chosen], s=6, c=colour)
    for index, row in enumerate(table.head(LABELLED_GENES).itertuples()):
        ranked.annotate(  # staggered to the right so that neighbouring names do not overlap
            str(row.perturbation),
            (row.rank, getattr(row, column)),
            fontsize=7,
            xytext=(6 + 30 * (index % 3), 2),
            textcoords="offset points",
            arrowprops={"arrowstyle": "-", "lw": 0.4, "color": "#777777"},
        )
    ranked.set_xscale("log")
    ranked.set_xlabel("rank")
    ranked.set_ylabel(
        "expected effect (evidence-calibrated L2 of Δ, log1p)"
        if calibrated
        else "predicted effect size (L2 of Δ pseudobulk, log1p)"
    )
    ranked.legend(frameon=False, fontsize=8, markerscale=2)
    cell_type = str(table["cell_type"].iloc[0]) if len(table) else ""
    ranked.set_title(f"In-silico screen in {cell_type}: {len(table)} genes", fontsize=10)
    evidence.axvline(cutoff, color="#555555", lw=0.8, ls="--")
    evidence.set_xlabel("cosine to the nearest measured perturbation")
    evidence.set_title("Effect against evidence (dashed: low-evidence cut-off)", fontsize=10)
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=110)
    plt.close(figure)
