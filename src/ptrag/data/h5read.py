"""Low-level, chunked access to an .h5ad file through h5py.

anndata would read a whole matrix eagerly; on a 1M-cell screen that alone exceeds the memory budget.
These helpers read obs/var columns one at a time and expression in row chunks instead. Every
problem with the file's structure becomes a :class:`~ptrag.errors.DataError`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd
import scipy.sparse as sp

from ptrag.data.matrix_source import MatrixSource
from ptrag.errors import DataError

__all__ = ["ExpressionSource", "frame_column", "frame_columns", "frame_index", "open_h5ad"]

SPARSE_ENCODINGS = ("csr_matrix", "csc_matrix")


def open_h5ad(path: Path) -> h5py.File:
    """Open ``path`` read-only; a missing file or a file that is not HDF5/AnnData is a DataError."""
    if not path.exists():
        raise DataError(f"Data file {path} does not exist. Check the path.")
    if path.is_dir():
        raise DataError(f"{path} is a directory; ptrag reads .h5ad files (zarr stores are not supported).")
    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        raise DataError(
            f"{path} is not an HDF5 file, so it cannot be an .h5ad AnnData file ({exc}). "
            "Write it with anndata's `adata.write_h5ad(path)`."
        ) from exc
    missing = [
        name for name in ("obs", "var") if name not in handle or not isinstance(handle[name], h5py.Group)
    ]
    if missing:
        handle.close()
        raise DataError(
            f"{path} is HDF5 but not AnnData: it has no {' or '.join(missing)} group. "
            "Write it with anndata's `adata.write_h5ad(path)`."
        )
    return handle


def _read_elem(element: Any, what: str) -> Any:
    from anndata.io import read_elem

    try:
        return read_elem(element)
    except Exception as exc:  # anndata raises many types for malformed elements
        raise DataError(f"Cannot read {what} from the .h5ad file: {exc}") from exc


def frame_columns(group: h5py.Group) -> list[str]:
    """Column names of an on-disk dataframe (obs or var), in file order."""
    order = group.attrs.get("column-order")
    if order is None:
        index_name = group.attrs.get("_index", "_index")
        return [k for k in group if k != index_name and k != "__categories"]
    return [str(c) for c in np.atleast_1d(order).tolist()]


def frame_index(group: h5py.Group, what: str) -> np.ndarray:
    """The index (cell or gene names) of an on-disk dataframe as an object array of str."""
    index_name = group.attrs.get("_index", "_index")
    if isinstance(index_name, bytes):
        index_name = index_name.decode()
    if index_name not in group:
        raise DataError(f"The {what} table of the .h5ad file has no index ({index_name!r} is missing).")
    values = _read_elem(group[index_name], f"the {what} names")
    values = np.asarray(values)
    if values.ndim != 1:
        raise DataError(f"The {what} names of the .h5ad file are not a 1-D list.")
    return np.array([v.decode() if isinstance(v, bytes) else str(v) for v in values], dtype=object)


def frame_column(group: h5py.Group, name: str, what: str) -> pd.Series:
    """One column of an on-disk dataframe (obs or var), read on its own."""
    if name not in group:
        raise DataError(f"Column {name!r} is listed in {what} but missing from the file.")
    values = _read_elem(group[name], f"{what} column {name!r}")
    if isinstance(values, pd.Categorical | pd.Series | pd.Index):
        return pd.Series(values)
    array = np.asarray(values)
    if array.ndim != 1:
        raise DataError(f"{what} column {name!r} is not one-dimensional.")
    return pd.Series(array)


class ExpressionSource(MatrixSource):
    """A cells × genes matrix inside the file (dense dataset or CSR/CSC group), read by row chunks."""

    def __init__(self, element: Any, key: str, n_obs: int) -> None:
        self.key = key
        self.element = element
        self._csc_cache: sp.csc_matrix | None = None
        self._indptr_cache: np.ndarray | None = None
        if isinstance(element, h5py.Dataset):
            self.format = "dense"
            if element.ndim != 2:
                raise DataError(f"Expression {key} has {element.ndim} dimensions; expected cells × genes.")
            if element.dtype.kind not in "biuf":
                raise DataError(f"Expression {key} has non-numeric dtype {element.dtype}.")
            self.shape = (int(element.shape[0]), int(element.shape[1]))
        elif isinstance(element, h5py.Group):
            encoding = element.attrs.get("encoding-type", element.attrs.get("h5sparse_format", ""))
            encoding = encoding.decode() if isinstance(encoding, bytes) else str(encoding)
            if encoding in ("csr", "csc"):
                encoding += "_matrix"
            if encoding not in SPARSE_ENCODINGS or not {"data", "indices", "indptr"} <= set(element):
                raise DataError(
                    f"Expression {key} is stored as {encoding or 'an unknown group'}; "
                    "ptrag reads dense arrays and CSR/CSC sparse matrices."
                )
            self.format = encoding[:3]
            shape = element.attrs.get("shape", element.attrs.get("h5sparse_shape"))
            if shape is None or len(shape) != 2:
                raise DataError(f"Sparse expression {key} has no valid 'shape' attribute.")
            self.shape = (int(shape[0]), int(shape[1]))
            if element["data"].dtype.kind not in "biuf":
                raise DataError(f"Expression {key} has non-numeric dtype {element['data'].dtype}.")
        else:
            raise DataError(f"Expression {key} is not an array.")
        if self.shape[0] != n_obs:
            raise DataError(f"Expression {key} has {self.shape[0]} rows but obs has {n_obs} cells.")

    @property
    def nnz(self) -> int:
        if not self.is_sparse:
            return self.shape[0] * self.shape[1]
        return int(self.element["data"].shape[0])

    def iter_chunks(self, chunk_rows: int | None = None) -> Iterator[tuple[int, np.ndarray | sp.csr_matrix]]:
        if self.format == "csc":
            # Column-compressed data cannot be sliced by rows cheaply; convert once (memory: nnz).
            yield 0, self._read_csc().tocsr()
            return
        yield from super().iter_chunks(chunk_rows)

    def read_rows(self, start: int, stop: int) -> np.ndarray | sp.csr_matrix:
        try:
            if self.format == "dense":
                return np.asarray(self.element[start:stop], dtype=np.float32)
            if self.format == "csc":
                return self._read_csc().tocsr()[start:stop]
            indptr = self._indptr()
            lo, hi = int(indptr[start]), int(indptr[stop])
            data = np.asarray(self.element["data"][lo:hi], dtype=np.float32)
            indices = np.asarray(self.element["indices"][lo:hi], dtype=np.int64)
        except (OSError, ValueError, TypeError) as exc:
            raise DataError(f"Cannot read rows {start}–{stop} of expression {self.key}: {exc}") from exc
        if indices.size and (indices.min() < 0 or indices.max() >= self.shape[1]):
            raise DataError(f"Sparse expression {self.key} has column indices outside 0–{self.shape[1] - 1}.")
        local_ptr = indptr[start : stop + 1] - lo
        return sp.csr_matrix((data, indices.astype(np.int32), local_ptr), shape=(stop - start, self.shape[1]))

    def _indptr(self) -> np.ndarray:
        if self._indptr_cache is not None:
            return self._indptr_cache
        indptr = np.asarray(self.element["indptr"][...], dtype=np.int64)
        if (
            indptr.shape != (self.shape[0] + 1,)
            or indptr[0] != 0
            or np.any(np.diff(indptr) < 0)
            or indptr[-1] != self.nnz
        ):
            raise DataError(f"Sparse expression {self.key} has a malformed indptr; the file is corrupted.")
        self._indptr_cache = indptr
        return indptr

    def _read_csc(self) -> sp.csc_matrix:
        if self._csc_cache is not None:
            return self._csc_cache
        try:
            data = np.asarray(self.element["data"][...], dtype=np.float32)
            indices = np.asarray(self.element["indices"][...], dtype=np.int64)
            indptr = np.asarray(self.element["indptr"][...], dtype=np.int64)
            matrix = sp.csc_matrix((data, indices, indptr), shape=self.shape)
            matrix.check_format(full_check=True)
        except (OSError, ValueError, TypeError) as exc:
            raise DataError(f"Sparse expression {self.key} is malformed: {exc}") from exc
        self._csc_cache = matrix
        return matrix
