"""A cells × genes matrix read by row chunks, wherever it lives.

:class:`MatrixSource` holds what every source shares (density, chunk size, sampling);
``ptrag.data.h5read.ExpressionSource`` reads a matrix inside an .h5ad file through h5py, and
:class:`ArraySource` reads one held by an AnnData object: numpy or scipy in memory, or an h5py
dataset / anndata sparse dataset when the AnnData is backed. Either way the loader sees the same
row chunks, so an in-memory AnnData is validated exactly like a file.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import h5py
import numpy as np
import scipy.sparse as sp

from ptrag.errors import DataError

__all__ = ["ArraySource", "MatrixSource"]

# About 64 MB of float32 per chunk: large enough for fast reads, small next to the 6 GB budget.
CHUNK_VALUES = 1 << 24


class MatrixSource:
    """Shared logic; subclasses set ``key``, ``shape``, ``format`` and implement ``nnz``/``read_rows``."""

    key: str
    shape: tuple[int, int]
    format: str  # "dense", "csr" or "csc"

    @property
    def is_sparse(self) -> bool:
        return self.format != "dense"

    @property
    def nnz(self) -> int:
        return self.shape[0] * self.shape[1]

    @property
    def density(self) -> float:
        total = self.shape[0] * self.shape[1]
        return self.nnz / total if total else 0.0

    def chunk_rows(self) -> int:
        """Rows per chunk: about CHUNK_VALUES values."""
        return max(1, CHUNK_VALUES // max(1, self.shape[1]))

    def read_rows(self, start: int, stop: int) -> np.ndarray | sp.csr_matrix:
        """Rows ``start:stop`` as a float32 array or float32 CSR matrix."""
        raise NotImplementedError

    def iter_chunks(self, chunk_rows: int | None = None) -> Iterator[tuple[int, np.ndarray | sp.csr_matrix]]:
        """Yield ``(start_row, block)``; blocks are float32 dense arrays or float32 CSR matrices."""
        step = chunk_rows or self.chunk_rows()
        for start in range(0, self.shape[0], step):
            yield start, self.read_rows(start, min(start + step, self.shape[0]))

    def sample(self, max_rows: int = 3000, windows: int = 3) -> np.ndarray:
        """Values from a few evenly spaced row windows (for cheap format checks before the full read)."""
        n = self.shape[0]
        if n == 0:
            return np.zeros(0, dtype=np.float32)
        width = max(1, max_rows // windows)
        starts = sorted({int(s) for s in np.linspace(0, max(0, n - width), windows)})
        values = []
        for start in starts:
            block = self.read_rows(start, min(n, start + width))
            values.append(block.data if sp.issparse(block) else block.ravel())
        return np.concatenate(values)


def _backed_sparse_format(matrix: Any) -> str | None:
    """"csr"/"csc" for anndata's on-disk sparse datasets (a backed AnnData's X), else None."""
    try:
        from anndata.abc import CSCDataset, CSRDataset
    except ImportError:  # anndata < 0.11
        return None
    if isinstance(matrix, CSRDataset):
        return "csr"
    if isinstance(matrix, CSCDataset):
        return "csc"
    return None


class ArraySource(MatrixSource):
    """A matrix held by an AnnData object: numpy, scipy sparse, or backed (h5py / anndata dataset)."""

    def __init__(self, matrix: Any, key: str, n_obs: int) -> None:
        self.key = key
        self._matrix = matrix
        self._rows_cache: sp.csr_matrix | None = None
        backed = _backed_sparse_format(matrix)
        if backed is not None:
            self.format = backed
            self._nnz = int(matrix.group["data"].shape[0])
            dtype = matrix.dtype
        elif sp.issparse(matrix):
            self.format = matrix.format if matrix.format in ("csr", "csc") else "csr"
            if matrix.format not in ("csr", "csc"):
                self._matrix = sp.csr_matrix(matrix)
            self._nnz = int(self._matrix.nnz)
            dtype = matrix.dtype
        elif isinstance(matrix, h5py.Dataset | np.ndarray):
            self.format = "dense"
            dtype = matrix.dtype
        else:
            try:
                self._matrix = np.asarray(matrix)
            except Exception as exc:  # dask, zarr, ...: anything that cannot become an array
                kind = type(matrix).__name__
                raise DataError(f"Expression {key} ({kind}) cannot be read as an array.") from exc
            self.format = "dense"
            dtype = self._matrix.dtype
        shape = self._matrix.shape
        if len(shape) != 2:
            raise DataError(f"Expression {key} has {len(shape)} dimensions; expected cells × genes.")
        if np.dtype(dtype).kind not in "biuf":
            raise DataError(f"Expression {key} has non-numeric dtype {dtype}.")
        self.shape = (int(shape[0]), int(shape[1]))
        if self.shape[0] != n_obs:
            raise DataError(f"Expression {key} has {self.shape[0]} rows but obs has {n_obs} cells.")

    @property
    def nnz(self) -> int:
        return self._nnz if self.is_sparse else self.shape[0] * self.shape[1]

    def _as_csr(self) -> sp.csr_matrix:
        # Column-compressed data cannot be sliced by rows cheaply; convert once (memory: nnz).
        if self._rows_cache is None:
            whole = self._matrix.to_memory() if hasattr(self._matrix, "to_memory") else self._matrix
            self._rows_cache = sp.csr_matrix(whole, dtype=np.float32)
        return self._rows_cache

    def read_rows(self, start: int, stop: int) -> np.ndarray | sp.csr_matrix:
        try:
            if self.format == "dense":
                return np.asarray(self._matrix[start:stop], dtype=np.float32)
            if self.format == "csc":
                return self._as_csr()[start:stop]
            return sp.csr_matrix(self._matrix[start:stop], dtype=np.float32)
        except (OSError, ValueError, TypeError) as exc:
            raise DataError(f"Cannot read rows {start}–{stop} of expression {self.key}: {exc}") from exc
