"""Predicted against real cells, stratum by stratum, for one perturbation.

Each panel is one basal-state stratum of the cell type's control cells (``ptrag.data.strata``): per
gene, the real cells' mean change from the stratum's own control cells (x) against the predicted
cells' (y), for each prediction given (for example a trained arm, its own mean shift on real
control cells, and an oracle). A prediction that reads each cell's state follows the diagonal in
every panel; a single mean shift draws the same cloud in all of them, right only on average.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: never needs a display

import matplotlib.pyplot as plt
import numpy as np

from ptrag.data.strata import assign_strata, fit_strata, left_alone_genes
from ptrag.io import atomic_path
from ptrag.keys import CELL_TYPE_COL, PERT_COL

__all__ = ["COLOURS", "stratum_shifts", "write_strata_figure"]

# Genes drawn per panel: those the real cells move most in any stratum.
SHOWN_GENES = 60
COLOURS = ("#d62728", "#1f77b4", "#2ca02c", "#9467bd")


def _cells(adata: Any, cell_type: str, perturbation: str) -> np.ndarray:
    obs = adata.obs
    chosen = (obs[CELL_TYPE_COL].astype(str) == cell_type) & (obs[PERT_COL].astype(str) == perturbation)
    x = adata.X[chosen.to_numpy()]
    return np.asarray(x.toarray() if hasattr(x, "toarray") else x, dtype=np.float64)


def stratum_shifts(
    real: Any, predictions: Mapping[str, Any], cell_type: str, perturbation: str, control_label: str
) -> dict[str, Any]:
    """Per stratum: the real and each prediction's mean change from that stratum's control cells."""
    controls = _cells(real, cell_type, control_label)
    strata = fit_strata(controls)
    real_cells = _cells(real, cell_type, perturbation)
    genes = left_alone_genes(strata, real_cells)
    base = np.stack([controls[strata.control_labels == j].mean(axis=0) for j in range(strata.k)])

    def per_stratum(cells: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        labels = assign_strata(strata, cells, genes)
        means = np.full(base.shape, np.nan)
        counts = np.bincount(labels, minlength=strata.k)
        for j in np.flatnonzero(counts):
            means[j] = cells[labels == j].mean(axis=0) - base[j]
        return means, counts

    real_shift, real_counts = per_stratum(real_cells)
    predicted = {
        name: per_stratum(_cells(adata, cell_type, perturbation)) for name, adata in predictions.items()
    }
    return {"real": (real_shift, real_counts), "predicted": predicted, "k": strata.k}


def write_strata_figure(
    real: Any,
    predictions: Mapping[str, Any],
    cell_type: str,
    perturbation: str,
    path: str | Path,
    control_label: str = "non-targeting",
) -> Path:
    """Write the figure (one panel per stratum, one colour per prediction) and return its path."""
    shifts = stratum_shifts(real, predictions, cell_type, perturbation, control_label)
    real_shift, real_counts = shifts["real"]
    moved = np.nan_to_num(np.abs(real_shift)).max(axis=0)
    shown = np.argsort(-moved)[:SHOWN_GENES]
    k = shifts["k"]
    figure, axes = plt.subplots(1, k, figsize=(3.3 * k, 3.5), sharex=True, sharey=True, squeeze=False)
    limit = float(np.nanmax(np.abs(real_shift[:, shown]))) * 1.15
    for j, axis in enumerate(axes[0]):
        axis.plot([-limit, limit], [-limit, limit], color="#bbbbbb", lw=0.8, zorder=0)
        for colour, (name, (shift, counts)) in zip(COLOURS, shifts["predicted"].items(), strict=False):
            if counts[j] == 0 or real_counts[j] == 0:
                continue
            r = np.corrcoef(real_shift[j, shown], shift[j, shown])[0, 1]
            axis.scatter(real_shift[j, shown], shift[j, shown], s=9, c=colour, alpha=0.75,
                         label=f"{name} (r = {r:.2f})")
        axis.set_title(f"stratum {j + 1}: {int(real_counts[j])} real cells", fontsize=9)
        axis.set_xlabel("real Δ from the stratum's controls", fontsize=8)
        axis.legend(fontsize=6.5, loc="upper left", frameon=False)
    axes[0][0].set_ylabel("predicted Δ", fontsize=8)
    axes[0][0].set_xlim(-limit, limit)
    axes[0][0].set_ylim(-limit, limit)
    figure.suptitle(
        f"{perturbation} in {cell_type}: predicted vs real change per basal-state stratum "
        f"({len(shown)} most-moved genes)",
        fontsize=10,
    )
    figure.tight_layout()
    target = Path(path)
    with atomic_path(target) as tmp:
        figure.savefig(tmp, dpi=130, format="png")
    plt.close(figure)
    return target
