"""The one list of metrics: name, direction (or best value), family, description and where it is shown.

Evaluation orders its columns by it, the paired tests take their win/loss direction from it, and the
report tables, figures, benchmark verdict and CLI tables pick their metrics from it (the flags
``plotted``, ``verdict`` and ``headline``). In the style of cell-eval's metric registry.

Families:

- ``gene_distribution``: distributional, in gene space (log1p expression of every gene);
- ``pca_distribution``: distributional, per principal component of the shared PCA-50, averaged
  over components (gge-eval's convention);
- ``mean_profile``: cell-eval's metrics on pseudobulk means and deltas from control;
- ``de``: differential-expression overlap against control.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray

__all__ = ["FAMILIES", "METRICS", "METRIC_REGISTRY", "Family", "Metric", "metric", "metrics_where"]

Family = Literal["gene_distribution", "pca_distribution", "mean_profile", "de"]
FAMILIES: tuple[str, ...] = ("gene_distribution", "pca_distribution", "mean_profile", "de")


@dataclass(frozen=True)
class Metric:
    """One metric. ``best_at`` set: the value closest to it wins (sd_ratio: 1); else ``higher_is_better``."""

    name: str
    family: Family
    description: str
    higher_is_better: bool = False
    best_at: float | None = None
    plotted: bool = False  # a panel of the report's metric bars
    verdict: bool = False  # a sentence of the benchmark verdict (each arm vs the baseline)
    headline: bool = False  # a column of the CLI's benchmark table

    @property
    def direction(self) -> str:
        """Human words: "lower", "higher" or "closer to 1"."""
        if self.best_at is not None:
            return f"closer to {self.best_at:g}"
        return "higher" if self.higher_is_better else "lower"

    def better(self, value: NDArray[np.float64], other: NDArray[np.float64]) -> NDArray[np.float64]:
        """+1 where ``value`` beats ``other``, −1 where it loses, 0 for a tie (elementwise)."""
        value = np.asarray(value, dtype=np.float64)
        other = np.asarray(other, dtype=np.float64)
        if self.best_at is not None:
            return np.sign(np.abs(other - self.best_at) - np.abs(value - self.best_at))
        return np.sign((value - other) if self.higher_is_better else (other - value))


_ENTRIES: tuple[Metric, ...] = (
    Metric("w1", "pca_distribution", "exact 1-D Wasserstein-1 per PC, mean over PCs", plotted=True,
           verdict=True, headline=True),
    Metric("w1_strata", "pca_distribution",
           "w1 within basal-state strata of the controls, weighted by the real cells' shares"),
    Metric("w2", "pca_distribution", "exact 1-D Wasserstein-2 per PC, mean over PCs", plotted=True,
           verdict=True),
    Metric("w2_ot", "pca_distribution", "exact multivariate W2 by optimal transport (POT emd2)"),
    Metric("energy_pca", "pca_distribution",
           "gge-eval energy distance per PC (geomloss convention, ½ V-statistic), mean over PCs",
           plotted=True, headline=True),
    Metric("mmd_pca", "pca_distribution",
           "gge-eval RBF MMD² per PC (median-heuristic σ, unbiased, clipped at 0), mean over PCs",
           plotted=True),
    Metric("energy_gene", "gene_distribution",
           "energy distance in gene space, V-statistic (= 2 × geomloss energy)", plotted=True,
           verdict=True, headline=True),
    Metric("energy_gene_unbiased", "gene_distribution",
           "energy distance in gene space, U-statistic (unbiased at any n)", plotted=True),
    Metric("mmd_gene", "gene_distribution",
           "unbiased RBF MMD² in gene space, σ = median pooled pairwise distance", plotted=True,
           verdict=True, headline=True),
    Metric("energy_strata", "gene_distribution",
           "energy_gene_unbiased within basal-state strata of the controls (k-means, k = 4), weighted "
           "by the real cells' shares (evaluation/strata.py)", plotted=True),
    Metric("sd_ratio", "gene_distribution", "mean per-gene SD of predicted / of real cells (1 is ideal)",
           best_at=1.0, plotted=True, headline=True),
    Metric("pearson_delta", "mean_profile", "Pearson r of predicted and real mean deltas from control",
           higher_is_better=True, plotted=True, verdict=True, headline=True),
    Metric("mse", "mean_profile", "mean squared error between predicted and real mean profiles"),
    Metric("mae", "mean_profile", "mean absolute error between predicted and real mean profiles"),
    Metric("discrimination_score_l1", "mean_profile",
           "1 − normalised rank of the true perturbation by L1 distance of deltas",
           higher_is_better=True, plotted=True, headline=True),
    Metric("overlap_at_N", "de", "overlap of the top-N DE genes (N = number of real DE genes)",
           higher_is_better=True),
)

METRIC_REGISTRY: dict[str, Metric] = {m.name: m for m in _ENTRIES}
METRICS: tuple[str, ...] = tuple(METRIC_REGISTRY)


def metric(name: str) -> Metric:
    """The registry entry of ``name``; a ValueError naming the known metrics otherwise."""
    try:
        return METRIC_REGISTRY[name]
    except KeyError:
        raise ValueError(f"Unknown metric {name!r}; known metrics: {', '.join(METRICS)}.") from None


def metrics_where(flag: Literal["plotted", "verdict", "headline"]) -> tuple[str, ...]:
    """Metric names, in registry order, whose ``flag`` is set."""
    return tuple(m.name for m in _ENTRIES if getattr(m, flag))
