"""Distributional metrics between a predicted and a real cell set.

Conventions (see docs/evaluation.md):

- ``w1``, ``w2``: exact 1-D Wasserstein-1/2 between the two samples' quantile functions, for each
  of the first ``n_pcs`` principal components, averaged over components. Unequal sample sizes are
  handled exactly: both quantile functions are step functions, so the integral over u ∈ (0, 1] is
  a finite sum over the union of their breakpoints.
- ``w2_ot``: exact multivariate W2 in the same PCA space (POT ``ot.emd2``, uniform weights,
  squared Euclidean cost, square root taken).
- ``energy_pca``, ``mmd_pca``: gge-eval's ``energy`` and ``mmd`` in PCA space, computed on each
  principal component separately (1-D) and averaged over components; see
  :func:`energy_per_component` and :func:`mmd_per_component`.
- ``mmd_gene``: unbiased estimate of squared MMD with an RBF kernel whose bandwidth σ is the median
  pairwise Euclidean distance of the pooled sample (median heuristic), in gene space.
- ``energy_gene``: energy distance 2E|X−Y| − E|X−X'| − E|Y−Y'| (V-statistic, Euclidean, gene space).
  This is exactly twice geomloss ``SamplesLoss("energy")`` with uniform weights.
- ``energy_gene_unbiased``: the same with the self-distances left out of the within-set means
  (U-statistic): unbiased, so comparable across set sizes, e.g. with the split-half noise floor.
- ``sd_ratio``: mean per-gene SD of the predicted cells / mean per-gene SD of the real cells.

The PCA is fitted once per evaluated set (:func:`fit_pca`) and shared by every method so that
numbers are comparable across methods and references.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.spatial.distance import cdist

__all__ = [
    "FloatArray",
    "PCAProjection",
    "RealSide",
    "distributional_metrics",
    "energy_distance",
    "energy_distances",
    "fit_pca",
    "sd_ratio",
    "w2_ot",
    "wasserstein_1d",
]

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class PCAProjection:
    """A fitted linear projection: ``(X - mean) @ components.T``."""

    mean: FloatArray  # (n_genes,)
    components: FloatArray  # (n_pcs, n_genes)

    @property
    def n_components(self) -> int:
        return int(self.components.shape[0])

    def transform(self, x: NDArray[np.floating]) -> FloatArray:
        return (np.asarray(x, dtype=np.float64) - self.mean) @ self.components.T


def fit_pca(real_cells: NDArray[np.floating], n_pcs: int = 50, seed: int = 0) -> PCAProjection:
    """Fit PCA on the real cells of the evaluated set (perturbed and control cells alike).

    The number of components is capped by the data's rank limits. Randomised SVD with a fixed seed
    keeps the fit fast on large sets and reproducible.
    """
    from sklearn.decomposition import PCA

    x = np.asarray(real_cells, dtype=np.float64)
    n_components = int(min(n_pcs, x.shape[0] - 1, x.shape[1]))
    if n_components < 1:
        raise ValueError("PCA needs at least two real cells")
    solver = "full" if min(x.shape) <= 500 else "randomized"
    pca = PCA(n_components=n_components, svd_solver=solver, random_state=seed)
    pca.fit(x)
    return PCAProjection(mean=pca.mean_.astype(np.float64), components=pca.components_.astype(np.float64))


def _quantile_pairs(n: int, m: int) -> tuple[NDArray[np.int64], NDArray[np.int64], FloatArray]:
    """Index pairs and interval widths of the two step quantile functions on (0, 1].

    Breakpoints are k/n and j/m; on the integer scale L = n·m they are k·m and j·n, so the union is
    exact. On the interval (t0, t1] the quantile functions take the sorted samples at ceil(t1/m)-1 and
    ceil(t1/n)-1.
    """
    scale = n * m
    points = np.union1d(np.arange(1, n + 1, dtype=np.int64) * m, np.arange(1, m + 1, dtype=np.int64) * n)
    widths = np.diff(np.concatenate(([0], points))) / scale
    index_a = (points + m - 1) // m - 1
    index_b = (points + n - 1) // n - 1
    return index_a, index_b, widths


def wasserstein_1d(a: NDArray[np.floating], b: NDArray[np.floating]) -> tuple[FloatArray, FloatArray]:
    """Exact W1 and W2 between samples ``a`` (n, d) and ``b`` (m, d), per column.

    Returns two arrays of length d. 1-D inputs are treated as one column.
    """
    a2 = np.asarray(a, dtype=np.float64)
    b2 = np.asarray(b, dtype=np.float64)
    if a2.ndim == 1:
        a2 = a2[:, None]
    if b2.ndim == 1:
        b2 = b2[:, None]
    if a2.shape[0] == 0 or b2.shape[0] == 0:
        nan = np.full(a2.shape[1], np.nan)
        return nan, nan.copy()
    a_sorted = np.sort(a2, axis=0)
    b_sorted = np.sort(b2, axis=0)
    index_a, index_b, widths = _quantile_pairs(a2.shape[0], b2.shape[0])
    diff = a_sorted[index_a] - b_sorted[index_b]
    w1 = widths @ np.abs(diff)
    w2 = np.sqrt(widths @ (diff * diff))
    return w1, w2


def w2_ot(a_pcs: FloatArray, b_pcs: FloatArray) -> float:
    """Exact multivariate W2 (uniform weights, squared Euclidean cost) by optimal transport."""
    import ot

    if len(a_pcs) == 0 or len(b_pcs) == 0:
        return float("nan")
    cost = cdist(a_pcs, b_pcs, metric="sqeuclidean")
    weights_a = np.full(len(a_pcs), 1.0 / len(a_pcs))
    weights_b = np.full(len(b_pcs), 1.0 / len(b_pcs))
    value = float(ot.emd2(weights_a, weights_b, cost, numItermax=1_000_000))
    return float(np.sqrt(max(value, 0.0)))


def _squared_distances(x: FloatArray, y: FloatArray) -> FloatArray:
    xx = np.einsum("ij,ij->i", x, x)
    yy = np.einsum("ij,ij->i", y, y)
    d2 = xx[:, None] + yy[None, :] - 2.0 * (x @ y.T)
    return np.maximum(d2, 0.0)


def mmd_rbf_unbiased(x: NDArray[np.floating], y: NDArray[np.floating]) -> float:
    """Unbiased squared MMD, RBF kernel exp(-d²/(2σ²)) with σ = median pooled pairwise distance."""
    x64 = np.asarray(x, dtype=np.float64)
    y64 = np.asarray(y, dtype=np.float64)
    n, m = len(x64), len(y64)
    if n < 2 or m < 2:
        return float("nan")
    pooled = np.concatenate([x64, y64])
    d2 = _squared_distances(pooled, pooled)
    off_diagonal = d2[~np.eye(n + m, dtype=bool)]
    sigma2 = float(np.median(off_diagonal)) if off_diagonal.size else 0.0
    if sigma2 <= 0.0:
        # Every cell identical across both sets: the distributions coincide.
        return 0.0
    kernel = np.exp(-d2 / (2.0 * sigma2))
    kxx = kernel[:n, :n]
    kyy = kernel[n:, n:]
    kxy = kernel[:n, n:]
    term_xx = (kxx.sum() - np.trace(kxx)) / (n * (n - 1))
    term_yy = (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
    return float(term_xx + term_yy - 2.0 * kxy.mean())


def within_distance_sum(x: NDArray[np.floating]) -> float:
    """Σ_i Σ_j |x_i − x_j| over ordered pairs (the within-set term of the energy distance)."""
    x64 = np.asarray(x, dtype=np.float64)
    # cdist rather than the Gram-matrix trick: exact zeros on the diagonal, no cancellation error.
    return float(cdist(x64, x64).sum()) if len(x64) else 0.0


def energy_distances(
    x: NDArray[np.floating], y: NDArray[np.floating], sum_yy: float | None = None
) -> tuple[float, float]:
    """Energy distance as (V-statistic, U-statistic).

    V: 2E|X-Y| - E|X-X'| - E|Y-Y'| with the zero self-distances in the means (geomloss's convention,
    times 2); its expectation grows as 1/n for equal distributions. U: the within-set means skip the
    self-distances, so it is unbiased and comparable across set sizes (it can be slightly negative).
    ``sum_yy``: ``within_distance_sum(y)`` when already known (evaluation scores many predictions
    against the same real cells).
    """
    x64 = np.asarray(x, dtype=np.float64)
    y64 = np.asarray(y, dtype=np.float64)
    n, m = len(x64), len(y64)
    if n == 0 or m == 0:
        return float("nan"), float("nan")
    dxy = cdist(x64, y64).mean()
    sum_xx = within_distance_sum(x64)
    if sum_yy is None:
        sum_yy = within_distance_sum(y64)
    v_stat = 2.0 * dxy - sum_xx / n**2 - sum_yy / m**2
    u_stat = 2.0 * dxy - sum_xx / (n * (n - 1)) - sum_yy / (m * (m - 1)) if n > 1 and m > 1 else float("nan")
    return float(v_stat), float(u_stat)


def energy_distance(x: NDArray[np.floating], y: NDArray[np.floating]) -> float:
    """Energy distance 2E|X-Y| - E|X-X'| - E|Y-Y'| (means include the zero diagonal)."""
    return energy_distances(x, y)[0]


def _unordered_pair_sums(sorted_columns: FloatArray) -> FloatArray:
    """Σ_{i<j} |x_i − x_j| per column of column-wise sorted samples, in O(n) after the sort."""
    n = sorted_columns.shape[0]
    coefficients = 2.0 * np.arange(n) - (n - 1)
    return coefficients @ sorted_columns


def energy_per_component(a: NDArray[np.floating], b: NDArray[np.floating]) -> FloatArray:
    """gge-eval's energy distance on every column separately: E|X−Y| − ½E|X−X′| − ½E|Y−Y′|.

    This is geomloss ``SamplesLoss("energy")`` on 1-D samples (half the V-statistic energy distance:
    means over all pairs, self-pairs included), which gge-eval applies per principal component.
    Computed exactly from sorted samples; geomloss floors every distance at 1e-4 and works in float32,
    which lowers its value by 5e-5·(1/n + 1/m) (more with tied values). NaN for an empty sample.
    """
    a2 = np.asarray(a, dtype=np.float64).reshape(len(a), -1)
    b2 = np.asarray(b, dtype=np.float64).reshape(len(b), -1)
    n, m = a2.shape[0], b2.shape[0]
    if n == 0 or m == 0:
        return np.full(a2.shape[1], np.nan)
    within_a = _unordered_pair_sums(np.sort(a2, axis=0))
    within_b = _unordered_pair_sums(np.sort(b2, axis=0))
    pooled = _unordered_pair_sums(np.sort(np.concatenate([a2, b2]), axis=0))
    across = pooled - within_a - within_b  # Σ_i Σ_j |a_i − b_j|
    # Ordered within-set sums are twice the unordered ones: ½·2U/n² = U/n².
    return across / (n * m) - within_a / n**2 - within_b / m**2


def _median_of_positive(gaps: FloatArray) -> FloatArray:
    """Per row, the median of the positive entries (NaN for none); a partition, not a sort, per row."""
    out = np.full(len(gaps), np.nan)
    untied = (gaps > 0.0).all(axis=1)
    if untied.any():
        middle = [(gaps.shape[1] - 1) // 2, gaps.shape[1] // 2]
        parted = np.partition(gaps[untied], middle, axis=1)
        out[untied] = 0.5 * (parted[:, middle[0]] + parted[:, middle[1]])
    for row in np.flatnonzero(~untied):  # tied values (e.g. duplicated cells): drop the zero gaps
        positive = gaps[row][gaps[row] > 0.0]
        if positive.size:
            out[row] = float(np.median(positive))
    return out


def _pair_blocks(n: int, m: int) -> tuple[NDArray[np.intp], NDArray[np.intp], int, int]:
    """Every unordered pair of a pooled sample of n + m values, ordered as the pairs within the first
    n, then the n·m pairs across, then the pairs within the last m: (first, second, end of the
    first block, end of the second block)."""
    within_a = np.triu_indices(n, k=1)
    across = np.divmod(np.arange(n * m), m)
    within_b = np.triu_indices(m, k=1)
    first = np.concatenate([within_a[0], across[0], within_b[0] + n])
    second = np.concatenate([within_a[1], across[1] + n, within_b[1] + n])
    return first, second, within_a[0].size, within_a[0].size + n * m


def mmd_per_component(a: NDArray[np.floating], b: NDArray[np.floating]) -> FloatArray:
    """gge-eval's MMD on every column separately: unbiased RBF MMD², clipped at 0.

    Per column: kernel exp(−d²/(2σ²)) with σ the median of the positive pairwise distances of the
    pooled 1-D sample (0 when every value is equal: the two samples coincide); the within-set means
    skip the diagonal (U-statistic), the cross term is the plain mean; negative estimates become 0.
    NaN when either sample has fewer than 2 values. The kernel is symmetric, so each unordered pair
    is evaluated once.
    """
    a2 = np.asarray(a, dtype=np.float64).reshape(len(a), -1)
    b2 = np.asarray(b, dtype=np.float64).reshape(len(b), -1)
    n, m = a2.shape[0], b2.shape[0]
    out = np.full(a2.shape[1], np.nan)
    if n < 2 or m < 2:
        return out
    pooled = np.concatenate([a2, b2]).T  # (columns, n + m)
    first, second, end_a, end_across = _pair_blocks(n, m)
    # Columns in chunks of about 4M pairwise entries: vectorised, with bounded memory.
    step = max(1, (1 << 22) // first.size)
    for start in range(0, pooled.shape[0], step):
        values = pooled[start : start + step]
        distances = np.abs(values[:, first] - values[:, second])  # (chunk, pairs)
        sigma = _median_of_positive(distances)
        identical = np.isnan(sigma)  # every value equal: the samples coincide
        sigma[identical] = 1.0
        kernel = np.exp(-(distances**2) / (2.0 * sigma[:, None] ** 2))
        within_a = 2.0 * kernel[:, :end_a].sum(axis=1) / (n * (n - 1))
        across = kernel[:, end_a:end_across].sum(axis=1) / (n * m)
        within_b = 2.0 * kernel[:, end_across:].sum(axis=1) / (m * (m - 1))
        estimate = np.maximum(0.0, within_a + within_b - 2.0 * across)
        estimate[identical] = 0.0
        out[start : start + step] = estimate
    return out


def sd_ratio(pred: NDArray[np.floating], real: NDArray[np.floating]) -> float:
    """Mean per-gene SD of predicted cells divided by that of real cells (1 = same spread)."""
    if len(pred) < 2 or len(real) < 2:
        return float("nan")
    real_sd = float(np.asarray(real, dtype=np.float64).std(axis=0, ddof=1).mean())
    if real_sd == 0.0:
        return float("nan")
    return float(np.asarray(pred, dtype=np.float64).std(axis=0, ddof=1).mean() / real_sd)


@dataclass(frozen=True)
class RealSide:
    """What the distributional metrics need of one condition's real cells alone (reusable across
    every prediction scored against them)."""

    pcs: FloatArray  # the real cells in the shared PCA
    sum_within: float  # within_distance_sum of the real cells (gene space)

    @classmethod
    def of(cls, real: NDArray[np.floating], pca: PCAProjection) -> RealSide:
        return cls(pca.transform(real), within_distance_sum(real))


def distributional_metrics(
    pred: NDArray[np.floating],
    real: NDArray[np.floating],
    pca: PCAProjection,
    include_ot: bool = True,
    real_side: RealSide | None = None,
) -> dict[str, float]:
    """All distributional metrics for one condition: predicted cells vs real cells.

    ``real_side``: ``RealSide.of(real, pca)`` when already computed (same values either way).
    """
    if real_side is None:
        real_side = RealSide.of(real, pca)
    pred_pcs = pca.transform(pred)
    real_pcs = real_side.pcs
    w1, w2 = wasserstein_1d(pred_pcs, real_pcs)
    energy, energy_unbiased = energy_distances(pred, real, real_side.sum_within)
    return {
        "w1": float(w1.mean()),
        "w2": float(w2.mean()),
        "w2_ot": w2_ot(pred_pcs, real_pcs) if include_ot else float("nan"),
        "energy_pca": float(energy_per_component(pred_pcs, real_pcs).mean()),
        "mmd_pca": float(np.nanmean(mmd_per_component(pred_pcs, real_pcs))),
        "energy_gene": energy,
        "energy_gene_unbiased": energy_unbiased,
        "mmd_gene": mmd_rbf_unbiased(pred, real),
        "sd_ratio": sd_ratio(pred, real),
    }
