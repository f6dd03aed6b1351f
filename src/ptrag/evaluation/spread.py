"""Per-gene spread: how wide the predicted cells are, gene by gene, against the real cells.

``sd_ratio`` (``ptrag.evaluation.distributional``) averages the per-gene SDs over genes before it
divides, so a prediction can score 1 while it is too wide on the genes the perturbation leaves alone
and too narrow on those it moves — the pattern issue 21 found in the generated cells (a learned
per-cell response that is noise where the mean barely moves). :func:`gene_spread` keeps the genes
apart:

- ``sd_pred``, ``sd_real``: the mean over perturbed conditions of the within-condition SD (ddof 1)
  of the predicted and of the real cells (conditions with at least two cells on both sides);
- ``sd_ratio``: ``sd_pred / sd_real`` (NaN where the real cells do not vary);
- ``effect``: the mean over conditions of the gene's |real mean − control mean| in units of its
  control SD: how much the perturbations move it;
- ``moved``: the quarter of genes with the largest ``effect``.

:func:`spread_summary` condenses the table to quantiles of the ratio for the moved genes and the
rest; ``ptrag evaluate`` writes the table (:data:`SPREAD_FILE`) and a figure of it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from ptrag.evaluation.pair import ConditionPair

__all__ = [
    "MOVED_SHARE",
    "SPREAD_FILE",
    "format_spread_summary",
    "gene_spread",
    "mean_spread",
    "spread_summary",
]

SPREAD_FILE = "gene_spread.csv"
# The share of genes, ranked by how much the perturbations move them, summarised as "moved".
MOVED_SHARE = 0.25
# Control SDs below this are treated as this in the effect size (constant genes have no spread).
MIN_CONTROL_SD = 1e-3
QUANTILES = (0.1, 0.5, 0.9)
OFF_BY = 0.1  # a predicted spread more than 10 % off the real one counts as off


def gene_spread(pair: ConditionPair) -> pd.DataFrame:
    """The per-gene spread table of the module docstring, indexed by gene, in var order."""
    pred_x, real_x = pair.pred_x, pair.real_x
    n_genes = real_x.shape[1]
    sums = {name: np.zeros(n_genes) for name in ("sd_pred", "sd_real", "effect")}
    n_conditions = 0
    for cell_type in pair.cell_types():
        control_rows = pair.real_rows.get((cell_type, pair.control_label))
        if control_rows is None or len(control_rows) < 2:
            continue
        controls = real_x[control_rows].astype(np.float64)
        control_mean = controls.mean(axis=0)
        control_sd = np.maximum(controls.std(axis=0, ddof=1), MIN_CONTROL_SD)
        for perturbation in pair.perturbations(cell_type):
            real_rows = pair.real_rows[(cell_type, perturbation)]
            pred_rows = pair.pred_rows.get((cell_type, perturbation), np.empty(0, dtype=np.intp))
            if len(real_rows) < 2 or len(pred_rows) < 2:
                continue
            real = real_x[real_rows].astype(np.float64)
            sums["sd_pred"] += pred_x[pred_rows].astype(np.float64).std(axis=0, ddof=1)
            sums["sd_real"] += real.std(axis=0, ddof=1)
            sums["effect"] += np.abs(real.mean(axis=0) - control_mean) / control_sd
            n_conditions += 1
    genes = pd.Index([str(g) for g in pair.adata_real.var_names], name="gene")
    scale = 1.0 / n_conditions if n_conditions else np.nan
    return _table(genes, {name: total * scale for name, total in sums.items()}, n_conditions)


def mean_spread(tables: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Several tables of the same genes (one method's seeds) as one: the SDs and effects averaged,
    the ratio and the moved genes recomputed from them."""
    first = tables[0]
    averaged = ("sd_pred", "sd_real", "effect")
    columns = {name: np.mean([t[name].to_numpy() for t in tables], axis=0) for name in averaged}
    return _table(first.index, columns, int(first.attrs.get("n_conditions", 0)))


def _table(genes: pd.Index, columns: dict[str, np.ndarray], n_conditions: int) -> pd.DataFrame:
    n_genes = len(genes)
    sd_pred, sd_real, effect = columns["sd_pred"], columns["sd_real"], columns["effect"]
    ratio = np.divide(sd_pred, sd_real, out=np.full(n_genes, np.nan), where=sd_real > 0)
    moved = np.zeros(n_genes, dtype=bool)
    if n_conditions:
        moved[np.argsort(-effect, kind="stable")[: int(np.ceil(MOVED_SHARE * n_genes))]] = True
    table = pd.DataFrame(
        {"sd_pred": sd_pred, "sd_real": sd_real, "sd_ratio": ratio, "effect": effect, "moved": moved},
        index=genes,
    )
    table.attrs["n_conditions"] = n_conditions
    return table


def spread_summary(table: pd.DataFrame) -> dict[str, Any]:
    """Quantiles (10 %, 50 %, 90 %) of the per-gene SD ratio over all genes, the moved genes and the
    rest, and the share of genes whose predicted spread is more than 10 % off the real one."""
    ratio = table["sd_ratio"].to_numpy(dtype=np.float64)
    finite = np.isfinite(ratio)
    moved = table["moved"].to_numpy(dtype=bool)

    def quantiles(mask: np.ndarray) -> list[float]:
        values = ratio[mask & finite]
        return [float(q) for q in np.quantile(values, QUANTILES)] if values.size else [float("nan")] * 3

    off = float(np.mean(np.abs(ratio[finite] - 1.0) > OFF_BY)) if finite.any() else float("nan")
    return {
        "quantiles": list(QUANTILES),
        "all": quantiles(np.ones_like(moved)),
        "moved": quantiles(moved),
        "other": quantiles(~moved),
        "share_off_by_10pct": off,
        "n_genes": int(finite.sum()),
        "n_conditions": int(table.attrs.get("n_conditions", 0)),
    }


def format_spread_summary(summary: dict[str, Any]) -> str:
    """One line for the terminal."""

    def band(values: list[float]) -> str:
        return f"{values[1]:.3f} ({values[0]:.3f}–{values[2]:.3f})"

    return (
        f"per-gene SD, predicted / real, median (10–90 %): all genes {band(summary['all'])}; the "
        f"{MOVED_SHARE:.0%} the perturbations move most {band(summary['moved'])}; the rest "
        f"{band(summary['other'])}; {summary['share_off_by_10pct']:.0%} of genes more than 10 % off"
    )
