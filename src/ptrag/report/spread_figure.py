"""The per-gene spread of predicted against real cells, as a figure (``ptrag.evaluation.spread``).

Left: each gene's predicted SD against its real SD (mean within-condition SDs), the diagonal where
they agree. Right: the distribution of their ratio for the genes the perturbations move most and for
the rest. A generator that adds noise where the mean barely moves shows the rest above 1.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: never needs a display

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ptrag.evaluation.spread import MOVED_SHARE
from ptrag.io import atomic_path

__all__ = ["SPREAD_FIGURE", "write_spread_figure"]

SPREAD_FIGURE = "gene_spread.png"

MOVED_COLOUR, OTHER_COLOUR = "#d62728", "#7f7f7f"


def write_spread_figure(table: pd.DataFrame, path: Path, title: str) -> Path:
    """Draw :func:`ptrag.evaluation.spread.gene_spread`'s table to ``path`` (PNG), atomically."""
    finite = np.isfinite(table["sd_ratio"].to_numpy(dtype=np.float64))
    shown = table[finite]
    moved = shown["moved"].to_numpy(dtype=bool)
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4.2))
    for mask, colour, label in (
        (~moved, OTHER_COLOUR, "other genes"),
        (moved, MOVED_COLOUR, f"the {MOVED_SHARE:.0%} most moved"),
    ):
        left.scatter(shown["sd_real"][mask], shown["sd_pred"][mask], s=4, alpha=0.5, c=colour, label=label)
    if len(shown):
        low = float(np.nanmin(shown[["sd_real", "sd_pred"]].to_numpy()))
        high = float(np.nanmax(shown[["sd_real", "sd_pred"]].to_numpy()))
        left.plot([low, high], [low, high], color="black", lw=0.8)
    left.set_xlabel("real cells' SD (mean within condition)")
    left.set_ylabel("predicted cells' SD")
    left.legend(fontsize=8, markerscale=3)
    ratio = np.log2(shown["sd_ratio"].to_numpy(dtype=np.float64))
    bins = np.linspace(*np.quantile(ratio, [0.005, 0.995]), 50) if ratio.size else 10
    for mask, colour, label in ((~moved, OTHER_COLOUR, "other genes"), (moved, MOVED_COLOUR, "most moved")):
        right.hist(ratio[mask], bins=bins, color=colour, alpha=0.6, density=True, label=label)
    right.axvline(0.0, color="black", lw=0.8)
    right.set_xlabel("log2(predicted SD / real SD)")
    right.set_ylabel("density of genes")
    right.legend(fontsize=8)
    figure.suptitle(title, fontsize=10)
    with atomic_path(path) as staged:
        figure.savefig(staged, format="png", dpi=100, bbox_inches="tight")
    plt.close(figure)
    return path
