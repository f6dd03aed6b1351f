"""How a screen's expression became log1p values, and the raw-counts preprocessing that does it.

A run stores its dataset's :class:`Normalisation` next to its ordered gene list, so that new data
(prediction, in-silico screens) is normalised exactly as the training data was and reduced to the
same genes: raw counts are scaled to the training cells' counts per cell, log1p-transformed and
the run's genes are taken in order. Highly variable genes are only ever selected on training data.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ptrag.errors import DataError, format_list

__all__ = ["Kind", "Normalisation", "gene_columns", "preprocess_counts"]

Kind = Literal["log1p", "counts"]


@dataclass(frozen=True)
class Normalisation:
    """``kind="log1p"``: the source was already log-normalised and is used as given.

    ``kind="counts"``: the source held raw counts; each cell was scaled to ``target_sum`` counts
    (scanpy's normalize_total; in training the median total of the cells) and log1p-transformed.
    """

    kind: Kind = "log1p"
    target_sum: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("log1p", "counts"):
            raise DataError(f"Unknown normalisation kind {self.kind!r}; expected 'log1p' or 'counts'.")
        if self.kind == "counts" and not (self.target_sum is not None and self.target_sum > 0):
            raise DataError(f"A counts normalisation needs a positive target_sum, got {self.target_sum!r}.")

    def describe(self) -> str:
        if self.kind == "log1p":
            return "log1p-normalised as given"
        return f"raw counts → normalize_total (target_sum={self.target_sum:g}) → log1p"

    def to_dict(self) -> dict[str, object]:
        return {"kind": self.kind, "target_sum": self.target_sum}

    @classmethod
    def from_dict(cls, values: Mapping[str, object]) -> Normalisation:
        target = values.get("target_sum")
        return cls(
            kind=str(values.get("kind", "log1p")),  # type: ignore[arg-type]
            target_sum=None if target is None else float(target),  # type: ignore[arg-type]
        )


def gene_columns(available: Sequence[str], genes: Sequence[str], where: str) -> np.ndarray:
    """Column positions of ``genes`` (in that order) among ``available``; an error names the missing."""
    repeated = sorted(g for g, n in Counter(genes).items() if n > 1)
    if repeated:
        raise DataError(f"The requested gene list repeats {format_list(repeated)}; list each gene once.")
    position = {g: i for i, g in enumerate(available)}
    missing = [g for g in genes if g not in position]
    if missing:
        extra = sorted(set(available) - set(genes))
        raise DataError(
            f"{where} lacks {len(missing)} of the {len(genes)} genes requested: {format_list(missing)}"
            + (f"; it has {len(extra)} genes not in that list: {format_list(extra)}" if extra else "")
            + ". Give data that measures the run's genes (ptrag.Model.load(RUN).genes lists them)."
        )
    return np.array([position[g] for g in genes], dtype=np.int64)


def median_total(counts: sp.csr_matrix) -> float:
    """Median counts per cell over cells with any counts: scanpy's normalize_total default target."""
    totals = np.asarray(counts.sum(axis=1)).ravel()
    positive = totals[totals > 0]
    return float(np.median(positive)) if positive.size else 1.0


def preprocess_counts(
    counts: sp.csr_matrix,
    genes: Sequence[str],
    n_top_genes: int,
    keep: Sequence[str] | None,
    target_sum: float | None,
    where: str,
) -> tuple[sp.csr_matrix, list[str], Normalisation]:
    """normalize_total → log1p over every gene, then ``keep`` in order or the highly variable genes.

    ``target_sum`` None: the median total of these cells (training). Totals always include every
    gene of the file, as in training, so a cell's scale does not depend on the genes kept.
    """
    import anndata as ad
    import scanpy as sc

    normalisation = Normalisation("counts", target_sum if target_sum is not None else median_total(counts))
    adata = ad.AnnData(X=counts, var=pd.DataFrame(index=pd.Index(list(genes))))
    sc.pp.normalize_total(adata, target_sum=normalisation.target_sum)
    sc.pp.log1p(adata)
    if keep is not None:
        adata = adata[:, gene_columns(list(genes), keep, where)]
    elif adata.n_vars > n_top_genes:
        try:
            sc.pp.highly_variable_genes(adata, n_top_genes=n_top_genes)
        except (ValueError, IndexError) as exc:
            raise DataError(f"scanpy could not select {n_top_genes} highly variable genes: {exc}") from exc
        adata = adata[:, adata.var["highly_variable"].to_numpy()]
    return sp.csr_matrix(adata.X, dtype=np.float32), [str(g) for g in adata.var_names], normalisation
