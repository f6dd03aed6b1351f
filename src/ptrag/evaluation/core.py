"""``evaluate``: every metric per (cell type, perturbation), aggregated over perturbations."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from threadpoolctl import threadpool_limits

from ptrag.data.strata import fit_strata
from ptrag.errors import DataError, format_list
from ptrag.evaluation.de import overlap_at_n, ranked_de_genes, sort_reference
from ptrag.evaluation.distributional import PCAProjection, RealSide, distributional_metrics, fit_pca
from ptrag.evaluation.metric_registry import METRICS
from ptrag.evaluation.pair import ConditionPair, cell_types_of, dense
from ptrag.evaluation.profile import profile_metrics
from ptrag.evaluation.spread import gene_spread
from ptrag.evaluation.strata import STRATA_METRICS, RealStrata, strata_metrics
from ptrag.keys import PERT_COL, UNS_KEY

__all__ = [
    "EvaluationResult",
    "aggregate",
    "evaluate",
    "fit_pca_on_real",
    "real_side_cache",
    "write_results",
]

log = logging.getLogger(__name__)

KNOWN_CONTROL_LABELS: tuple[str, ...] = ("non-targeting", "control", "ctrl", "NT")
CONDITION_COLUMNS: tuple[str, ...] = ("cell_type", "perturbation", "n_pred", "n_real")
AGG_STATISTICS: tuple[str, ...] = ("count", "nan_count", "mean", "median", "std", "min", "max")


@dataclass
class EvaluationResult:
    """Per-condition metrics (``results``) and their aggregate over perturbations (``agg``).

    ``agg`` is indexed by statistic (count, nan_count, mean, median, std, min, max) with one column
    per metric; NaNs are skipped and counted in ``nan_count``.
    """

    results: pd.DataFrame
    agg: pd.DataFrame
    control_label: str
    info: dict[str, Any] = field(default_factory=dict)
    # Per gene: predicted and real within-condition SD, their ratio, how much it is moved
    # (ptrag.evaluation.spread); None for results built elsewhere.
    gene_spread: pd.DataFrame | None = None

    @property
    def nan_counts(self) -> dict[str, int]:
        return {m: int(self.agg.loc["nan_count", m]) for m in self.agg.columns}


def aggregate(results: pd.DataFrame, metrics: Sequence[str] | None = None) -> pd.DataFrame:
    """Mean, median, std, min, max over rows per metric, skipping and counting NaNs."""
    names = [m for m in (metrics or METRICS) if m in results.columns]
    rows: dict[str, dict[str, float]] = {}
    for name in names:
        values = pd.to_numeric(results[name], errors="coerce").to_numpy(dtype=np.float64)
        finite = values[~np.isnan(values)]
        rows[name] = {
            "count": float(finite.size),
            "nan_count": float(values.size - finite.size),
            "mean": float(finite.mean()) if finite.size else np.nan,
            "median": float(np.median(finite)) if finite.size else np.nan,
            "std": float(finite.std(ddof=1)) if finite.size > 1 else np.nan,
            "min": float(finite.min()) if finite.size else np.nan,
            "max": float(finite.max()) if finite.size else np.nan,
        }
    agg = pd.DataFrame(rows, index=list(AGG_STATISTICS), columns=names)
    agg.index.name = "statistic"
    return agg


def resolve_control_label(adata_real: Any, adata_pred: Any, pert_col: str, control_label: str | None) -> str:
    """The control label: given, else ``uns["ptrag"]["control_label"]``, else a known label present."""
    present = set(adata_real.obs[pert_col].astype(str).unique())
    if control_label is None:
        for adata in (adata_real, adata_pred):
            stored = adata.uns.get(UNS_KEY, {}).get("control_label") if hasattr(adata, "uns") else None
            if stored is not None:
                control_label = str(stored)
                break
    if control_label is None:
        found = [label for label in KNOWN_CONTROL_LABELS if label in present]
        if len(found) != 1:
            raise DataError(
                f"Cannot tell the control label in column {pert_col!r} "
                f"(known labels found: {found or 'none'}). Pass --control-label."
            )
        control_label = found[0]
    if control_label not in present:
        raise DataError(
            f"Control label {control_label!r} not found in the real cells' {pert_col!r} column. "
            f"Labels present: {format_list(sorted(present))}. Pass the right --control-label."
        )
    return control_label


def validate_pair(
    adata_pred: Any, adata_real: Any, pert_col: str, celltype_col: str | None, control_label: str
) -> ConditionPair:
    """The two files as a :class:`ConditionPair`; DataError naming the mismatch when they cannot be
    compared."""
    pred_genes = list(map(str, adata_pred.var_names))
    real_genes = list(map(str, adata_real.var_names))
    if pred_genes != real_genes:
        missing = [g for g in real_genes if g not in set(pred_genes)]
        extra = [g for g in pred_genes if g not in set(real_genes)]
        detail = (
            f"genes only in real: {format_list(missing)}; genes only in pred: {format_list(extra)}"
            if missing or extra
            else "same genes in a different order"
        )
        raise DataError(f"adata_pred and adata_real must have identical var_names ({detail}).")
    for name, adata in (("adata_pred", adata_pred), ("adata_real", adata_real)):
        for column in (pert_col, celltype_col):
            if column is not None and column not in adata.obs.columns:
                raise DataError(
                    f"{name} has no obs column {column!r}. Columns present: {format_list(adata.obs.columns)}."
                )
    pair = ConditionPair(adata_pred, adata_real, pert_col, celltype_col, control_label)
    pair.check_same_conditions()
    return pair


# Caches of what evaluate() computes from the real cells alone, active within real_side_cache().
_REAL_CACHES: list[dict[str, dict[tuple[str, ...], Any]]] = []


@contextlib.contextmanager
def real_side_cache() -> Iterator[None]:
    """Within the block, :func:`evaluate` computes what depends on the real cells alone once per real
    file and reuses it for every prediction scored against the same cells: the control cells' strata
    and DE reference, each condition's real DE genes, PCA projection, within-set distances and
    strata. The file is recognised by its content (expression, labels, the PCA), never by identity,
    and the cached values are the very ones a fresh call computes, so results do not change. The
    benchmark scores every arm, diagnostic row, reference and oracle of a split against one file.
    """
    cache: dict[str, dict[tuple[str, ...], Any]] = {}
    _REAL_CACHES.append(cache)
    try:
        yield
    finally:
        _REAL_CACHES.remove(cache)


def _real_memo(
    real_x: NDArray[np.float32],
    real_types: NDArray[Any],
    real_perts: NDArray[Any],
    genes: list[str],
    control_label: str,
    pca: PCAProjection,
) -> Callable[[tuple[str, ...], Callable[[], Any]], Any]:
    """``memo(key, compute)``: the value cached for this real file under ``key``, else computed."""
    if not _REAL_CACHES:
        return lambda _key, compute: compute()
    digest = hashlib.blake2b(digest_size=20)
    for part in (
        np.ascontiguousarray(real_x),
        np.ascontiguousarray(pca.mean),
        np.ascontiguousarray(pca.components),
    ):
        digest.update(str((part.dtype, part.shape)).encode())
        digest.update(part.data)
    for labels in (real_types, real_perts, genes, [control_label]):
        digest.update("\x1e".join(map(str, labels)).encode())
        digest.update(b"\x1d")
    entries = _REAL_CACHES[-1].setdefault(digest.hexdigest(), {})

    def memo(key: tuple[str, ...], compute: Callable[[], Any]) -> Any:
        if key not in entries:
            entries[key] = compute()
        return entries[key]

    return memo


def evaluate(
    adata_pred: Any,
    adata_real: Any,
    control_label: str | None = None,
    pert_col: str = PERT_COL,
    celltype_col: str | None = "cell_type",
    pca: PCAProjection | None = None,
    n_pcs: int = 50,
    include_de: bool = True,
    include_ot: bool = True,
    progress: bool = True,
    seed: int = 0,
    include_strata: bool = True,
) -> EvaluationResult:
    """Score predicted cells against real cells for every (cell type, perturbation).

    ``pca`` lets several methods share one projection (fit it with :func:`fit_pca_on_real`); by
    default it is fitted on all real cells here, controls included. The control condition is used
    only as the reference of deltas and DE, never scored. The state strata (``energy_strata``,
    ``w1_strata``) are fitted once per cell type on its real control cells (``evaluation/strata.py``).
    """
    from ptrag.progress import progress_bar

    if celltype_col is not None and celltype_col not in adata_real.obs.columns:
        log.warning("No %r column: treating all cells as one cell type", celltype_col)
        celltype_col = None
    if pert_col not in adata_real.obs.columns:
        raise DataError(
            f"adata_real has no obs column {pert_col!r}. "
            f"Columns present: {format_list(adata_real.obs.columns)}."
        )
    control_label = resolve_control_label(adata_real, adata_pred, pert_col, control_label)
    pair = validate_pair(adata_pred, adata_real, pert_col, celltype_col, control_label)
    genes = [str(g) for g in adata_real.var_names]
    real_x, pred_x = pair.real_x, pair.pred_x
    for name, matrix in (("adata_pred", pred_x), ("adata_real", real_x)):
        bad = int(matrix.size - np.count_nonzero(np.isfinite(matrix)))
        if bad:
            raise DataError(f"{name}.X holds {bad} NaN or infinite values; metrics need finite expression.")
    if pca is None:
        pca = fit_pca(real_x, n_pcs=n_pcs, seed=seed)
    # Bounds of every value the DE test will see, for its per-gene search offsets.
    low = float(min(real_x.min(), pred_x.min()))
    high = float(max(real_x.max(), pred_x.max()))

    real_types = cell_types_of(adata_real, celltype_col)
    real_perts = adata_real.obs[pert_col].astype(str).to_numpy()
    real_groups, pred_groups = pair.real_rows, pair.pred_rows

    memo = _real_memo(real_x, real_types, real_perts, genes, control_label, pca)
    rows: list[dict[str, Any]] = []
    unmatched = 0
    control_differs: list[str] = []
    n_conditions = sum(1 for _, p in real_groups if p != control_label)
    bar = progress_bar(total=n_conditions, desc="evaluate", unit="condition", enabled=progress)
    # Per-condition matrices are small: multithreaded BLAS only adds contention there (measured
    # 60x slower for 50x2000 products on a busy 2-core machine).
    with threadpool_limits(limits=1):
        for cell_type in pair.cell_types():
            control_key = (cell_type, control_label)
            if control_key not in real_groups or control_key not in pred_groups:
                raise DataError(
                    f"Cell type {cell_type!r} has no {control_label!r} control cells in "
                    f"{'adata_real' if control_key not in real_groups else 'adata_pred'}; "
                    "deltas and DE need them."
                )
            real_ctrl = real_x[real_groups[control_key]].astype(np.float64)
            pred_ctrl = pred_x[pred_groups[control_key]].astype(np.float64)
            if not np.allclose(real_ctrl.mean(0), pred_ctrl.mean(0), rtol=0.0, atol=1e-6):
                control_differs.append(cell_type)
            perts = pair.perturbations(cell_type)
            if not perts:
                continue
            real_means = np.stack(
                [real_x[real_groups[cell_type, p]].mean(0, dtype=np.float64) for p in perts]
            )
            pred_means = np.stack(
                [pred_x[pred_groups[cell_type, p]].mean(0, dtype=np.float64) for p in perts]
            )
            profile = profile_metrics(
                pred_means, real_means, pred_ctrl.mean(0), real_ctrl.mean(0), perts, genes
            )
            if include_de:
                # The ranked DE genes do not depend on the bounds (low, high) as long as they hold
                # every value: the per-gene offsets only keep the genes apart.
                real_reference = functools.cache(lambda ctrl=real_ctrl: sort_reference(ctrl, low, high))
                pred_reference = sort_reference(pred_ctrl, low, high)
            strata = (
                memo(("strata", cell_type), lambda ctrl=real_ctrl: fit_strata(ctrl))
                if include_strata and len(real_ctrl) > 1
                else None
            )
            for i, perturbation in enumerate(perts):
                real_cells = real_x[real_groups[cell_type, perturbation]].astype(np.float64)
                pred_cells = pred_x[pred_groups[cell_type, perturbation]].astype(np.float64)
                condition = (cell_type, perturbation)
                unmatched += int(len(real_cells) != len(pred_cells))
                row: dict[str, Any] = {
                    "cell_type": cell_type,
                    "perturbation": perturbation,
                    "n_pred": len(pred_cells),
                    "n_real": len(real_cells),
                }
                real_side = memo(("pcs", *condition), lambda cells=real_cells: RealSide.of(cells, pca))
                row.update(
                    distributional_metrics(
                        pred_cells, real_cells, pca, include_ot=include_ot, real_side=real_side
                    )
                )
                if strata is not None:
                    real_strata = memo(
                        ("strata", *condition),
                        lambda cells=real_cells, fitted=strata: RealStrata.of(cells, fitted, pca),
                    )
                    row.update(strata_metrics(pred_cells, real_cells, strata, pca, real_strata))
                else:
                    row.update(dict.fromkeys(STRATA_METRICS, np.nan))
                row.update({name: float(values[i]) for name, values in profile.items()})
                if include_de:
                    real_ranked = memo(
                        ("de", *condition),
                        lambda cells=real_cells, ref=real_reference: ranked_de_genes(cells, ref()),
                    )
                    row["overlap_at_N"] = overlap_at_n(
                        real_ranked, ranked_de_genes(pred_cells, pred_reference)
                    )
                else:
                    row["overlap_at_N"] = np.nan
                rows.append(row)
                bar.update(1)
    bar.close()
    if unmatched:
        log.warning(
            "%d condition(s) have a different number of predicted and real cells; W1/W2 depend on n, "
            "so compare methods only at matched n.",
            unmatched,
        )
    if control_differs:
        log.warning(
            "The control cells of %s differ between adata_pred and adata_real; each file's deltas use its "
            "own control mean (cell-eval's convention), so pearson_delta and discrimination compare "
            "deltas from different baselines.",
            format_list(control_differs),
        )
    results = pd.DataFrame(rows).reindex(columns=[*CONDITION_COLUMNS, *METRICS])
    info = {"n_conditions": len(rows), "n_unmatched": unmatched, "n_pcs": pca.n_components}
    return EvaluationResult(
        results=results,
        agg=aggregate(results),
        control_label=control_label,
        info=info,
        gene_spread=gene_spread(pair),
    )


def fit_pca_on_real(adata_real: Any, n_pcs: int = 50, seed: int = 0) -> PCAProjection:
    """The shared projection: PCA on all real cells of the evaluated set (controls included)."""
    return fit_pca(dense(adata_real.X), n_pcs=n_pcs, seed=seed)


def write_results(result: EvaluationResult, out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``results.csv`` and ``agg_results.csv`` (cell-eval names) atomically."""
    from ptrag.io import atomic_write_text

    out = Path(out_dir)
    results_path = out / "results.csv"
    agg_path = out / "agg_results.csv"
    atomic_write_text(results_path, result.results.to_csv(index=False))
    atomic_write_text(agg_path, result.agg.reset_index().to_csv(index=False))
    return results_path, agg_path
