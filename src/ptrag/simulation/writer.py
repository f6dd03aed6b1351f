"""Write an .h5ad chunk by chunk, in anndata's on-disk format, so memory stays bounded.

obs, var and uns go through ``anndata.io.write_elem``; X and ``layers["counts"]`` are CSR matrices
appended with ``anndata.io.sparse_dataset(...).append``; ``obsm["X_hvg"]`` is a dense h5py dataset
filled block by block (with anndata's array encoding attributes).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

import h5py
import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata.io import sparse_dataset, write_elem

from ptrag.io import h5ad_strings

__all__ = ["ChunkedH5adWriter"]


class ChunkedH5adWriter:
    """Append cells (X, counts, X_hvg) to an .h5ad whose obs/var are known up front."""

    def __init__(
        self,
        path: Path,
        obs: pd.DataFrame,
        var: pd.DataFrame,
        uns: Mapping[str, object],
        store_x: bool = True,
        store_counts: bool = True,
        x_hvg_dtype: str = "float32",
    ) -> None:
        self.path = Path(path)
        self.n_obs, self.n_vars = len(obs), len(var)
        self.store_x, self.store_counts = store_x, store_counts
        self.rows_written = 0
        self.file = h5py.File(self.path, "w")
        self.file.attrs["encoding-type"] = "anndata"
        self.file.attrs["encoding-version"] = "0.1.0"
        with h5ad_strings():
            write_elem(self.file, "obs", obs)
            write_elem(self.file, "var", var)
            write_elem(self.file, "uns", dict(uns))
        write_elem(self.file, "obsm", {})
        write_elem(self.file, "varm", {})
        write_elem(self.file, "obsp", {})
        write_elem(self.file, "varp", {})
        write_elem(self.file, "layers", {})
        block = max(1, min(self.n_obs, max(1, 2**20 // max(1, self.n_vars))))
        self.x_hvg = self.file["obsm"].create_dataset(
            "X_hvg", shape=(self.n_obs, self.n_vars), dtype=np.dtype(x_hvg_dtype), chunks=(block, self.n_vars)
        )
        self.x_hvg.attrs["encoding-type"] = "array"
        self.x_hvg.attrs["encoding-version"] = "0.2.0"

    def _append_sparse(self, group: h5py.Group, key: str, matrix: sp.csr_matrix) -> None:
        if key in group:
            sparse_dataset(group[key]).append(matrix)
        else:
            write_elem(group, key, matrix)  # anndata makes sparse datasets resizable

    def append(self, counts: sp.csr_matrix, normalised: sp.csr_matrix, dense: np.ndarray) -> None:
        """Write the next block of cells: raw counts, log1p-normalised CSR and the same values dense."""
        n = dense.shape[0]
        stop = self.rows_written + n
        if stop > self.n_obs:
            raise ValueError(f"More rows ({stop}) than obs ({self.n_obs}).")
        if self.store_x:
            self._append_sparse(self.file, "X", normalised)
        if self.store_counts:
            self._append_sparse(self.file["layers"], "counts", counts)
        self.x_hvg[self.rows_written : stop] = dense.astype(self.x_hvg.dtype, copy=False)
        self.rows_written = stop

    def close(self) -> None:
        if self.file.id.valid:
            self.file.close()

    def __enter__(self) -> ChunkedH5adWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
        if exc_type is None and self.rows_written != self.n_obs:
            raise ValueError(f"Only {self.rows_written} of {self.n_obs} cells were written to {self.path}.")
