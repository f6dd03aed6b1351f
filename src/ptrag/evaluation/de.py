"""Differential expression against control, as cell-eval computes it (via pdex), vectorised.

For each perturbation and gene: a two-sided Mann-Whitney U test of the perturbed cells against the
control cells of the same cell type (asymptotic normal approximation with tie correction and
continuity correction, p clipped to [0, 1]), Benjamini-Hochberg FDR over the genes of that
perturbation, and log2 fold change of the geometric means ``log2(expm1(mean x_p) / expm1(mean x_c))``
(0/0 → 0). The control column is sorted once per cell type; each perturbation is then tested for
all genes at once with ``searchsorted``, which is what keeps hundreds of perturbations fast.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.special import ndtr
from scipy.stats import false_discovery_control

__all__ = ["FloatArray", "overlap_at_n", "ranked_de_genes", "sort_reference"]

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class SortedReference:
    """Distinct control values per gene, flattened with a per-gene offset, ready for searchsorted.

    log1p count data has many ties, so the distinct values are far fewer than the cells; a smaller
    table keeps the binary searches in cache.
    """

    unique_flat: FloatArray  # distinct (value + gene offset), gene-major and increasing
    cells_before: NDArray[np.int64]  # (n_unique + 1,) reference cells before each distinct value
    unique_counts: FloatArray  # (n_unique,) cells equal to each distinct value
    offsets: FloatArray  # (n_genes,)
    n_ref: int
    tie_term: FloatArray  # (n_genes,) Σ(t³ − t) over the control's own tie groups
    log_mean: FloatArray  # (n_genes,) mean of log1p values


def _gene_offsets(low: float, high: float, n_genes: int) -> FloatArray:
    # A per-gene offset larger than the data range turns one flat searchsorted into G separate ones.
    width = float(high - low) + 1.0
    return np.arange(n_genes, dtype=np.float64) * width - low


def _run_lengths(sorted_columns: FloatArray) -> tuple[NDArray[np.intp], NDArray[np.intp], FloatArray]:
    """Runs of equal values in each column of a column-sorted matrix: (gene, length, value)."""
    n_rows = sorted_columns.shape[0]
    flat = sorted_columns.T.reshape(-1)
    starts = np.ones(flat.size, dtype=bool)
    starts[1:] = flat[1:] != flat[:-1]
    starts[::n_rows] = True
    start_pos = np.flatnonzero(starts)
    lengths = np.diff(np.append(start_pos, flat.size))
    return start_pos // n_rows, lengths, flat[start_pos]


def sort_reference(control: NDArray[np.floating], low: float, high: float) -> SortedReference:
    """Prepare the control cells of one cell type; ``low``/``high`` bound every value to be tested."""
    ctrl = np.sort(np.asarray(control, dtype=np.float64), axis=0)
    n_ref, n_genes = ctrl.shape
    offsets = _gene_offsets(low, high, n_genes)
    genes, lengths, values = _run_lengths(ctrl)
    t = lengths.astype(np.float64)
    tie_term = np.bincount(genes, weights=t**3 - t, minlength=n_genes)
    cells_before = np.concatenate(([0], np.cumsum(lengths))).astype(np.int64)
    return SortedReference(
        unique_flat=values + offsets[genes],
        cells_before=cells_before,
        unique_counts=t,
        offsets=offsets,
        n_ref=n_ref,
        tie_term=tie_term,
        log_mean=ctrl.mean(0),
    )


def _count_reference(queries: FloatArray, reference: SortedReference) -> tuple[FloatArray, FloatArray]:
    """Per query (value + gene offset): reference cells of its gene strictly below it, and equal to it."""
    position = np.searchsorted(reference.unique_flat, queries, side="left")
    # cells_before counts across genes; a query above its gene's maximum lands on the next gene's
    # first value, whose count is exactly (gene + 1) * n_ref.
    less = reference.cells_before[position].astype(np.float64)
    inside = position < reference.unique_flat.size
    hit = np.zeros(queries.size, dtype=bool)
    hit[inside] = reference.unique_flat[position[inside]] == queries[inside]
    equal = np.zeros(queries.size)
    equal[hit] = reference.unique_counts[position[hit]]
    return less, equal


def mann_whitney_vs_reference(
    cells: NDArray[np.floating], reference: SortedReference
) -> tuple[FloatArray, FloatArray]:
    """Two-sided MWU p-values (and U of ``cells``) for every gene: ``cells`` (n, G) vs the reference."""
    x_sorted = np.sort(np.asarray(cells, dtype=np.float64), axis=0)
    n1, n_genes = x_sorted.shape
    n2 = reference.n_ref
    # Gene-major and sorted within each gene, so the queries are globally sorted: searchsorted is
    # then cache-friendly, and U does not depend on the order of cells.
    queries = (x_sorted + reference.offsets[None, :]).T.reshape(-1)
    less, equal = _count_reference(queries, reference)
    gene_start = np.repeat(np.arange(n_genes, dtype=np.float64) * n2, n1)
    u1 = np.bincount(
        np.repeat(np.arange(n_genes), n1), weights=(less - gene_start) + 0.5 * equal, minlength=n_genes
    )

    # Tie groups of the pooled sample: the control's own groups, updated for every value in `cells`.
    starts = np.ones(queries.size, dtype=bool)
    starts[1:] = queries[1:] != queries[:-1]
    starts[::n1] = True
    start_pos = np.flatnonzero(starts)
    lengths = np.diff(np.append(start_pos, queries.size)).astype(np.float64)
    genes = start_pos // n1
    run_equal = equal[start_pos]
    pooled = run_equal + lengths
    extra = (pooled**3 - pooled) - (run_equal**3 - run_equal)
    tie_term = reference.tie_term + np.bincount(genes, weights=extra, minlength=n_genes)

    n = n1 + n2
    mu = n1 * n2 / 2.0
    variance = n1 * n2 / 12.0 * ((n + 1.0) - tie_term / (n * (n - 1.0)))
    u_max = np.maximum(u1, n1 * n2 - u1)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (u_max - mu - 0.5) / np.sqrt(variance)
        p = np.where(variance > 0.0, 2.0 * ndtr(-z), 1.0)
    return u1, np.clip(p, 0.0, 1.0)


def log2_fold_change(cells: NDArray[np.floating], reference: SortedReference) -> FloatArray:
    """pdex's geometric-mean log2 fold change for log1p data (0/0 → 0, x/0 → ±inf)."""
    target = np.expm1(np.asarray(cells, dtype=np.float64).mean(axis=0))
    control = np.expm1(reference.log_mean)
    with np.errstate(divide="ignore", invalid="ignore"):
        lfc = np.log2(target / control)
    lfc[np.isnan(lfc)] = 0.0
    return lfc


def ranked_de_genes(
    cells: NDArray[np.floating], reference: SortedReference, fdr_threshold: float = 0.05
) -> NDArray[np.intp]:
    """Indices of genes with BH FDR < threshold, ordered by |log2 fold change| descending."""
    _, p = mann_whitney_vs_reference(cells, reference)
    fdr = false_discovery_control(p)
    significant = np.flatnonzero(fdr < fdr_threshold)
    abs_lfc = np.abs(log2_fold_change(cells, reference))[significant]
    # Stable order keeps polars' "ordinal" tie-breaking (first gene first).
    return significant[np.argsort(-abs_lfc, kind="stable")]


def overlap_at_n(real_ranked: NDArray[np.intp], pred_ranked: NDArray[np.intp], k: int | None = None) -> float:
    """cell-eval ``overlap_at_N`` (k=None) or ``overlap_at_k``: shared top genes / k_eff.

    k_eff is the number of real DE genes (capped at k); with no real DE gene the value is 0.0, as in
    cell-eval.
    """
    k_eff = real_ranked.size if not k else min(k, real_ranked.size)
    if k_eff == 0:
        return 0.0
    return float(np.intersect1d(real_ranked[:k_eff], pred_ranked[:k_eff]).size / k_eff)
