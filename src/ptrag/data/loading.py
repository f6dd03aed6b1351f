"""Load and validate a perturbation screen from .h5ad: ``load_dataset(path, config)``.

Rules (documented for users in docs/data.md):

* obs columns are detected from known aliases (see :mod:`ptrag.data.columns`) or given explicitly.
* Expression comes from ``obsm["X_hvg"]`` when present, else ``X`` (``DataConfig.expression`` picks
  another). Columns of an obsm matrix are named, in order of preference, by ``uns["<key>_genes"]``,
  by ``var_names[var["highly_variable"]]`` when that selects exactly as many genes, or by
  ``var_names`` when var has exactly as many genes; otherwise loading fails.
* Integer-valued data (checked on a sample of rows, then on every chunk) is treated as raw counts
  and preprocessed with scanpy: normalize_total → log1p → highly_variable_genes(n_top_genes).
* The matrix is read in row chunks through h5py straight into float16/float32 dense or CSR storage,
  so peak memory is the final storage plus one chunk.
"""

from __future__ import annotations

import logging
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import scipy.sparse as sp
from tqdm.auto import tqdm

from ptrag.config import DataConfig
from ptrag.data import columns as cols
from ptrag.data.dataset import BATCH, CELL_TYPE, PERTURBATION, ColumnMapping, PerturbationDataset
from ptrag.data.expression import (
    FLOAT16_MAX,
    DenseExpression,
    ExpressionBuilder,
    SparseExpression,
    choose_storage,
    to_storage,
)
from ptrag.data.h5read import ExpressionSource, frame_column, frame_columns, frame_index, open_h5ad
from ptrag.data.validation import (
    check_block,
    check_structure,
    control_only_warnings,
    small_group_warnings,
)
from ptrag.errors import DataError, format_list

logger = logging.getLogger(__name__)

DEFAULT_BATCH = "0"
# log1p of a million counts is ~14; much larger values mean the data is not log-transformed.
LOG_SCALE_LIMIT = 30.0


def load_dataset(
    path: str | Path,
    config: DataConfig = DataConfig(),  # noqa: B008  (frozen dataclass: safe as a default)
    *,
    set_len: int | None = None,
) -> PerturbationDataset:
    """Read, validate and (for raw counts) preprocess a screen; see the module docstring."""
    path = Path(path)
    with open_h5ad(path) as handle:
        cell_names = frame_index(handle["obs"], "obs (cell)")
        if cell_names.size == 0:
            raise DataError(f"{path} is empty: it has 0 cells.")
        obs, mapping = _read_obs(handle["obs"], cell_names, config)
        source = _expression_source(handle, config.expression, cell_names.size)
        genes = _gene_names(handle, source)
        if len(genes) == 0:
            raise DataError(f"{path} is empty: expression {source.key} has 0 genes.")
        _check_unique(cell_names, "cell names (obs_names)", "adata.obs_names_make_unique()")
        _check_unique(np.asarray(genes, dtype=object), "gene names", "adata.var_names_make_unique()")
        warnings: list[str] = []
        expression, genes, note = _read_expression(source, genes, config, warnings)
    check_structure(obs, mapping.control_label)
    warnings.extend(control_only_warnings(obs, mapping.control_label))
    if set_len is not None:
        warnings.extend(small_group_warnings(obs, mapping.control_label, set_len))
    for message in warnings:
        logger.warning(message)
    description = f"{source.key}{note}, stored as {expression.storage}"
    return PerturbationDataset(
        expression=expression,
        genes=tuple(genes),
        obs=obs,
        columns=mapping,
        source=str(path),
        warnings=warnings,
        expression_source=description,
    )


def _read_obs(
    group: h5py.Group, cell_names: np.ndarray, config: DataConfig
) -> tuple[pd.DataFrame, ColumnMapping]:
    present = frame_columns(group)
    pert_col = cols.choose_column(
        "perturbation",
        config.perturbation_column,
        cols.PERTURBATION_ALIASES,
        present,
        "--perturbation-column",
    )
    type_col = cols.choose_column(
        "cell type", config.cell_type_column, cols.CELL_TYPE_ALIASES, present, "--cell-type-column"
    )
    batch_col = cols.choose_column(
        "batch", config.batch_column, cols.BATCH_ALIASES, present, "--batch-column", required=False
    )
    chosen = [c for c in (pert_col, type_col, batch_col) if c is not None]
    if len(set(chosen)) != len(chosen):
        raise DataError(
            f"The same obs column is used for two roles ({format_list(chosen)}); give distinct columns."
        )
    data: dict[str, pd.Series] = {}
    for role, column in ((PERTURBATION, pert_col), (CELL_TYPE, type_col), (BATCH, batch_col)):
        if column is None:
            data[role] = pd.Series(np.full(cell_names.size, DEFAULT_BATCH, dtype=object))
            continue
        series = frame_column(group, column, "obs")
        if len(series) != cell_names.size:
            raise DataError(f"obs column {column!r} has {len(series)} values for {cell_names.size} cells.")
        data[role] = _as_labels(series, column)
    control = cols.choose_control_label(config.control_label, data[PERTURBATION], str(pert_col))
    obs = pd.DataFrame(
        {
            role: pd.Categorical(values.to_numpy(), categories=sorted(values.unique()))
            for role, values in data.items()
        },
        index=pd.Index(cell_names, name="cell"),
    )
    mapping = ColumnMapping(
        perturbation=str(pert_col), cell_type=str(type_col), batch=batch_col, control_label=control
    )
    return obs, mapping


def _as_labels(series: pd.Series, column: str) -> pd.Series:
    """A column as str labels; missing values are an error naming how many cells lack a label."""
    missing = series.isna().to_numpy()
    if missing.any():
        raise DataError(
            f"obs column {column!r} has {int(missing.sum())} missing values "
            f"(e.g. cell #{int(missing.argmax())}). Fill or drop those cells before loading."
        )
    return series.astype(str).reset_index(drop=True).astype(object)


def _expression_source(handle: h5py.File, choice: str, n_obs: int) -> ExpressionSource:
    obsm = handle.get("obsm")
    if choice == "auto":
        if isinstance(obsm, h5py.Group) and "X_hvg" in obsm:
            return ExpressionSource(obsm["X_hvg"], "obsm['X_hvg']", n_obs)
        choice = "X"
    if choice == "X":
        if "X" not in handle:
            raise DataError("The file has no X matrix and no obsm['X_hvg']; there is no expression to read.")
        return ExpressionSource(handle["X"], "X", n_obs)
    kind, _, key = choice.partition("/") if "/" in choice else ("obsm", "", choice)
    container = handle.get(kind)
    if kind not in ("obsm", "layers") or not isinstance(container, h5py.Group) or key not in container:
        available = sorted(obsm.keys()) if isinstance(obsm, h5py.Group) else []
        raise DataError(
            f"Expression {choice!r} not found. Use 'X', an obsm key ({format_list(available) or 'none'}) "
            "or 'layers/<key>'."
        )
    return ExpressionSource(container[key], f"{kind}['{key}']", n_obs)


def _gene_names(handle: h5py.File, source: ExpressionSource) -> list[str]:
    var = handle["var"]
    var_names = frame_index(var, "var (gene)")
    width = source.shape[1]
    if not source.key.startswith("obsm"):
        if var_names.size != width:
            raise DataError(f"{source.key} has {width} columns but var has {var_names.size} genes.")
        return [str(g) for g in var_names]
    key = source.key[len("obsm['") : -2]
    uns = handle.get("uns")
    if isinstance(uns, h5py.Group) and f"{key}_genes" in uns:
        names = np.asarray(frame_column(uns, f"{key}_genes", "uns"))
        if names.size == width:
            return [str(g) for g in names]
    reasons = [f"var has {var_names.size} genes"]
    if "highly_variable" in frame_columns(var):
        flags = frame_column(var, "highly_variable", "var")
        if flags.dtype == bool:
            if int(flags.sum()) == width:
                return [str(g) for g in var_names[flags.to_numpy()]]
            reasons.append(f"var['highly_variable'] marks {int(flags.sum())}")
    if var_names.size == width:
        return [str(g) for g in var_names]
    raise DataError(
        f"Cannot name the {width} columns of {source.key}: {', '.join(reasons)}. Store the gene names as "
        f"uns['{key}_genes'], or read X instead with --expression X."
    )


def _check_unique(names: np.ndarray, what: str, fix: str) -> None:
    uniques, counts = np.unique(names.astype(str), return_counts=True)
    duplicated = uniques[counts > 1]
    if duplicated.size:
        raise DataError(
            f"Duplicated {what}: {format_list(duplicated.tolist())} ({duplicated.size} names repeated). "
            f"Make them unique, e.g. with {fix}."
        )


def _looks_like_counts(source: ExpressionSource) -> bool:
    values = source.sample()
    if values.size == 0 or not np.isfinite(values).all():
        return False
    return bool(np.all(values == np.round(values)) and values.max() >= 1)


def _read_expression(
    source: ExpressionSource, genes: list[str], config: DataConfig, warnings: list[str]
) -> tuple[DenseExpression | SparseExpression, list[str], str]:
    raw = _looks_like_counts(source)
    storage = "sparse" if raw else choose_storage(config.storage, source.is_sparse, source.density)
    nnz = source.nnz if source.is_sparse and source.format == "csr" else None
    builder = ExpressionBuilder(source.shape[0], source.shape[1], storage, nnz=nnz)
    largest = 0.0
    chunks = source.iter_chunks()
    total = -(-source.shape[0] // source.chunk_rows())
    for start, block in tqdm(chunks, total=total, desc="Reading expression", unit="chunk", disable=total < 4):
        largest = max(largest, check_block(block, start, source.key, raw))
        builder.add(start, block)
    builder.checked = True  # every chunk passed check_block: finite and non-negative
    if not raw:
        if largest > LOG_SCALE_LIMIT:
            warnings.append(
                f"{source.key} has values up to {largest:.1f}, larger than log1p data usually has; "
                "check that it is log1p-normalised."
            )
        if storage == "float16" and largest > FLOAT16_MAX:
            raise DataError(
                f"{source.key} has values up to {largest:.3g}, too large for float16 storage; "
                "use storage float32 (data.storage=float32) or log1p-normalise the data."
            )
        return builder.finish(), genes, ""
    matrix = builder.finish()
    assert isinstance(matrix, SparseExpression)  # raw counts are always read as sparse
    processed, genes = _preprocess_counts(matrix.matrix, genes, config.n_top_genes)
    density = processed.nnz / max(1, processed.shape[0] * processed.shape[1])
    # normalize_total + log1p of validated non-negative counts stay finite and non-negative.
    final = to_storage(processed, choose_storage(config.storage, True, density), checked=True)
    steps = f"normalize_total, log1p, {len(genes)} highly variable genes"
    warnings.append(f"{source.key} holds raw counts (integer values); preprocessed with scanpy: {steps}.")
    return final, genes, f" (raw counts → {steps})"


def _preprocess_counts(
    counts: sp.csr_matrix, genes: list[str], n_top_genes: int
) -> tuple[sp.csr_matrix, list[str]]:
    import anndata as ad
    import scanpy as sc

    adata = ad.AnnData(X=counts, var=pd.DataFrame(index=pd.Index(genes)))
    sc.pp.normalize_total(adata)
    sc.pp.log1p(adata)
    if adata.n_vars > n_top_genes:
        try:
            sc.pp.highly_variable_genes(adata, n_top_genes=n_top_genes)
        except (ValueError, IndexError) as exc:
            raise DataError(f"scanpy could not select {n_top_genes} highly variable genes: {exc}") from exc
        adata = adata[:, adata.var["highly_variable"].to_numpy()]
    return sp.csr_matrix(adata.X, dtype=np.float32), [str(g) for g in adata.var_names]
