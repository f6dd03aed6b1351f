"""Load and validate a perturbation screen: ``load_dataset(path_or_anndata, config)``.

Rules (documented for users in docs/data.md):

* The input is an .h5ad path or an ``anndata.AnnData`` (dense or sparse, in memory or backed); an
  AnnData is read where it is, with the same checks and messages as a file.
* obs columns are detected from known aliases (see :mod:`ptrag.data.columns`) or given explicitly;
  several agreeing candidates are resolved to the Replogle/Arc name.
* Expression comes from ``obsm["X_hvg"]`` when present, else ``X`` (``DataConfig.expression`` picks
  another). Columns of an obsm matrix are named, in order of preference, by ``uns["<key>_genes"]``,
  by ``var_names[var["highly_variable"]]`` when that selects exactly as many genes, or by
  ``var_names`` when var has exactly as many genes; otherwise loading fails.
* Integer-valued data (over half of the nonzero values in a sample of rows; then every value of
  every chunk must be an integer, or loading fails naming the cell row) is treated as raw counts:
  normalize_total → log1p, then highly_variable_genes(n_top_genes) — or, when the caller passes an
  ordered gene list (a trained run's), exactly those genes in that order and no gene selection.
* The matrix is read in row chunks straight into float16/float32 dense or CSR storage, so peak
  memory is the final storage plus one chunk.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

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
from ptrag.data.matrix_source import MatrixSource
from ptrag.data.normalisation import Normalisation, gene_columns, preprocess_counts
from ptrag.data.readers import MATRIX_KINDS, ScreenReader, open_screen
from ptrag.data.validation import (
    check_block,
    check_structure,
    control_only_warnings,
    small_group_warnings,
)
from ptrag.errors import DataError, format_list
from ptrag.progress import progress_bar

__all__ = ["load_dataset"]

if TYPE_CHECKING:
    import anndata as ad

logger = logging.getLogger(__name__)

DEFAULT_BATCH = "0"
# log1p of a million counts is ~14; much larger values mean the data is not log-transformed.
LOG_SCALE_LIMIT = 30.0
# Share of a sample's nonzero values that are integers from which the data are taken as raw counts.
COUNTS_INTEGER_SHARE = 0.5


def load_dataset(
    data: str | Path | ad.AnnData,
    config: DataConfig = DataConfig(),  # noqa: B008  (frozen dataclass: safe as a default)
    *,
    set_len: int | None = None,
    genes: Sequence[str] | None = None,
    normalisation: Normalisation | None = None,
    prediction_input: bool = False,
) -> PerturbationDataset:
    """Read, validate and (for raw counts) preprocess a screen; see the module docstring.

    ``genes``: the ordered gene list to return (a trained run's); missing genes are an error and no
    highly variable genes are selected. ``normalisation``: the run's :class:`Normalisation`, so raw
    counts are scaled as in training. ``prediction_input``: the file is input for prediction, where
    controls-only cell types are normal, so they are not warned about.
    """
    with open_screen(data) as reader:
        cell_names = reader.cell_names()
        if cell_names.size == 0:
            raise DataError(f"{reader.label} is empty: it has 0 cells.")
        obs, mapping = _read_obs(reader, cell_names, config)
        source = _expression_source(reader, config.expression)
        names = _gene_names(reader, source)
        if len(names) == 0:
            raise DataError(f"{reader.label} is empty: expression {source.key} has 0 genes.")
        _check_unique(cell_names, "cell names (obs_names)", "adata.obs_names_make_unique()")
        _check_unique(np.asarray(names, dtype=object), "gene names", "adata.var_names_make_unique()")
        warnings: list[str] = []
        expression, kept, note, used = _read_expression(
            source, names, config, warnings, genes, normalisation, reader.label
        )
    check_structure(obs, mapping.control_label)
    if not prediction_input:
        warnings.extend(control_only_warnings(obs, mapping.control_label))
    if set_len is not None:
        warnings.extend(small_group_warnings(obs, mapping.control_label, set_len))
    for message in warnings:
        logger.warning(message)
    return PerturbationDataset(
        expression=expression,
        genes=tuple(kept),
        obs=obs,
        columns=mapping,
        source=reader.label,
        warnings=warnings,
        expression_source=f"{source.key}{note}, stored as {expression.storage}",
        normalisation=used,
    )


def _read_obs(
    reader: ScreenReader, cell_names: np.ndarray, config: DataConfig
) -> tuple[pd.DataFrame, ColumnMapping]:
    present = reader.obs_columns()
    roles = (
        ("perturbation", config.perturbation_column, cols.PERTURBATION_ALIASES, "--perturbation-column"),
        ("cell type", config.cell_type_column, cols.CELL_TYPE_ALIASES, "--cell-type-column"),
        ("batch", config.batch_column, cols.BATCH_ALIASES, "--batch-column"),
    )
    pert_col, type_col, batch_col = (
        cols.choose_column(
            role,
            override,
            aliases,
            present,
            option,
            required=role != "batch",
            read=reader.obs_column,
            cell_names=cell_names,
        )
        for role, override, aliases, option in roles
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
        series = reader.obs_column(column)
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


def _expression_source(reader: ScreenReader, choice: str) -> MatrixSource:
    if choice == "auto":
        hvg = reader.matrix("obsm", "X_hvg")
        if hvg is not None:
            return hvg
        choice = "X"
    if choice == "X":
        x = reader.matrix("X")
        if x is None:
            raise DataError("The data has no X matrix and no obsm['X_hvg']; there is no expression to read.")
        return x
    kind, _, key = choice.partition("/") if "/" in choice else ("obsm", "", choice)
    source = reader.matrix(kind, key) if kind in MATRIX_KINDS else None
    if source is None:
        available = reader.matrix_keys("obsm")
        raise DataError(
            f"Expression {choice!r} not found. Use 'X', an obsm key ({format_list(available) or 'none'}) "
            "or 'layers/<key>'."
        )
    return source


def _gene_names(reader: ScreenReader, source: MatrixSource) -> list[str]:
    var_names = reader.var_names()
    width = source.shape[1]
    if not source.key.startswith("obsm"):
        if var_names.size != width:
            raise DataError(f"{source.key} has {width} columns but var has {var_names.size} genes.")
        return [str(g) for g in var_names]
    key = source.key[len("obsm['") : -2]
    names = reader.uns_genes(key)
    if names is not None and names.size == width:
        return [str(g) for g in names]
    reasons = [f"var has {var_names.size} genes"]
    if "highly_variable" in reader.var_columns():
        flags = reader.var_column("highly_variable")
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


def _looks_like_counts(source: MatrixSource) -> bool:
    """Counts when most of a sample's nonzero values are integers (log1p values almost never are):
    a few fractions among counts are then a mix, refused while reading, not a reason to read the
    counts as log1p."""
    values = source.sample()
    if values.size == 0 or not np.isfinite(values).all():
        return False
    nonzero = values[values != 0]
    if nonzero.size == 0:
        return False
    integer_share = float(np.mean(nonzero == np.round(nonzero)))
    return integer_share >= COUNTS_INTEGER_SHARE and bool(values.max() >= 1)


def _read_matrix(
    source: MatrixSource, storage: str, raw: bool, columns: np.ndarray | None, label: str = ""
) -> tuple[DenseExpression | SparseExpression, float]:
    """Every chunk validated and stored (only ``columns``, in order, when given); the largest value."""
    n_cols = source.shape[1] if columns is None else len(columns)
    nnz = source.nnz if source.format == "csr" and columns is None else None
    builder = ExpressionBuilder(source.shape[0], n_cols, storage, nnz=nnz)  # type: ignore[arg-type]
    largest = 0.0
    total = -(-source.shape[0] // source.chunk_rows())
    chunks = source.iter_chunks()
    bar = progress_bar(chunks, total=total, desc="Reading expression", unit="chunk", enabled=total >= 4)
    for start, block in bar:
        if columns is not None:
            block = block[:, columns]
        largest = max(largest, check_block(block, start, source.key, raw, label))
        builder.add(start, block)
    builder.checked = True  # every chunk passed check_block: finite and non-negative
    return builder.finish(), largest


def _read_expression(
    source: MatrixSource,
    names: list[str],
    config: DataConfig,
    warnings: list[str],
    genes: Sequence[str] | None,
    normalisation: Normalisation | None,
    label: str,
) -> tuple[DenseExpression | SparseExpression, list[str], str, Normalisation]:
    raw = _looks_like_counts(source)
    if not raw:
        columns = None if genes is None else gene_columns(names, genes, label)
        storage = choose_storage(config.storage, source.is_sparse, source.density)
        matrix, largest = _read_matrix(source, storage, raw, columns)
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
        if normalisation is not None and normalisation.kind == "counts":
            warnings.append(
                f"The run was trained on raw counts ({normalisation.describe()}), but {source.key} is "
                f"already log-normalised: check that it was scaled to {normalisation.target_sum:g} "
                "counts per cell."
            )
        return matrix, list(genes) if genes is not None else names, "", Normalisation()
    counts, _ = _read_matrix(source, "sparse", raw, None, label)
    assert isinstance(counts, SparseExpression)  # raw counts are always read as sparse
    target = normalisation.target_sum if normalisation is not None else None
    processed, kept, used = preprocess_counts(counts.matrix, names, config.n_top_genes, genes, target, label)
    density = processed.nnz / max(1, processed.shape[0] * processed.shape[1])
    # normalize_total + log1p of validated non-negative counts stay finite and non-negative.
    final = to_storage(processed, choose_storage(config.storage, True, density), checked=True)
    chosen = f"{len(kept)} highly variable genes" if genes is None else f"the {len(kept)} given genes"
    steps = f"normalize_total, log1p, {chosen}"
    message = (
        f"{source.key} holds raw counts (integer values); preprocessed with scanpy: {steps} "
        f"({used.target_sum:g} counts per cell)."
    )
    if normalisation is None:
        warnings.append(message)
    elif normalisation.kind == "counts":
        logger.info(message)  # expected: the run was trained on raw counts too
    else:
        warnings.append(f"{message} The run was trained on log-normalised data: check the scales match.")
    return final, kept, f" (raw counts → {steps})", used
