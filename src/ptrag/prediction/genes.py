"""Make a dataset's genes match a model's ordered gene list, or say exactly how they differ."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from ptrag.data.dataset import ExpressionMatrix, PerturbationDataset
from ptrag.errors import DataError, format_list

__all__ = ["align_genes"]

log = logging.getLogger(__name__)


class ReorderedExpression:
    """Expression whose columns are gathered into another gene order on each read."""

    def __init__(self, inner: ExpressionMatrix, columns: np.ndarray) -> None:
        self.inner = inner
        self.columns = columns

    @property
    def shape(self) -> tuple[int, int]:
        return (self.inner.shape[0], len(self.columns))

    @property
    def nbytes(self) -> int:
        return self.inner.nbytes

    def rows(self, index: np.ndarray) -> np.ndarray:
        # Fancy indexing on columns returns a non-C-contiguous array; torch would then take other
        # kernels and the predictions would differ from those on the original order in the last bit.
        return np.ascontiguousarray(self.inner.rows(index)[:, self.columns])


def align_genes(
    dataset: PerturbationDataset, genes: Sequence[str], what: str = "the checkpoint"
) -> PerturbationDataset:
    """Return ``dataset`` with columns in ``genes`` order; fail naming missing and extra genes.

    Only the order differing is fixed silently; genes the model does not know are dropped with a
    warning; genes the model needs but the data lacks are an error.
    """
    genes = tuple(genes)
    if dataset.genes == genes:
        return dataset
    present = set(dataset.genes)
    missing = [g for g in genes if g not in present]
    extra = sorted(present - set(genes))
    if missing:
        raise DataError(
            f"The data lacks {len(missing)} of the {len(genes)} genes {what} was trained on: "
            f"{format_list(missing)}"
            + (f"; it has {len(extra)} genes the model does not know: {format_list(extra)}" if extra else "")
            + ". Predict on data with the training data's genes (ptrag.Model.load(RUN).genes lists them)."
        )
    if extra:
        log.warning(
            "Ignoring %d genes of the data that %s was not trained on: %s",
            len(extra),
            what,
            format_list(extra),
        )
    position = {g: i for i, g in enumerate(dataset.genes)}
    columns = np.array([position[g] for g in genes], dtype=np.int64)
    return replace(dataset, expression=ReorderedExpression(dataset.expression, columns), genes=genes)
