"""One read-only view of a screen, whether it is an .h5ad file or an AnnData object.

The loader asks a reader for obs/var names and columns, uns gene lists and expression matrices;
:class:`H5adReader` answers from the file through h5py (column by column, matrices by row chunks),
:class:`AnnDataReader` from an AnnData in memory or backed, without writing a temporary file.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import h5py
import numpy as np
import pandas as pd

from ptrag.data.h5read import ExpressionSource, frame_column, frame_columns, frame_index, open_h5ad
from ptrag.data.matrix_source import ArraySource, MatrixSource
from ptrag.errors import DataError

__all__ = ["MATRIX_KINDS", "ScreenReader", "open_screen"]

MATRIX_KINDS = ("obsm", "layers")


class ScreenReader(Protocol):
    label: str  # names the input in messages: a path or "the AnnData object"

    def cell_names(self) -> np.ndarray: ...
    def obs_columns(self) -> list[str]: ...
    def obs_column(self, name: str) -> pd.Series: ...
    def var_names(self) -> np.ndarray: ...
    def var_columns(self) -> list[str]: ...
    def var_column(self, name: str) -> pd.Series: ...
    def uns_genes(self, key: str) -> np.ndarray | None: ...
    def matrix_keys(self, kind: str) -> list[str]: ...
    def matrix(self, kind: str, key: str = "") -> MatrixSource | None: ...


class H5adReader:
    def __init__(self, handle: h5py.File, label: str) -> None:
        self.handle, self.label = handle, label
        self._cell_names: np.ndarray | None = None

    def cell_names(self) -> np.ndarray:
        if self._cell_names is None:
            self._cell_names = frame_index(self.handle["obs"], "obs (cell)")
        return self._cell_names

    def obs_columns(self) -> list[str]:
        return frame_columns(self.handle["obs"])

    def obs_column(self, name: str) -> pd.Series:
        return frame_column(self.handle["obs"], name, "obs")

    def var_names(self) -> np.ndarray:
        return frame_index(self.handle["var"], "var (gene)")

    def var_columns(self) -> list[str]:
        return frame_columns(self.handle["var"])

    def var_column(self, name: str) -> pd.Series:
        return frame_column(self.handle["var"], name, "var")

    def uns_genes(self, key: str) -> np.ndarray | None:
        uns = self.handle.get("uns")
        if isinstance(uns, h5py.Group) and f"{key}_genes" in uns:
            return np.asarray(frame_column(uns, f"{key}_genes", "uns"))
        return None

    def matrix_keys(self, kind: str) -> list[str]:
        group = self.handle.get(kind)
        return sorted(group.keys()) if isinstance(group, h5py.Group) else []

    def matrix(self, kind: str, key: str = "") -> MatrixSource | None:
        n_obs = len(self.cell_names())
        if kind == "X":
            return ExpressionSource(self.handle["X"], "X", n_obs) if "X" in self.handle else None
        if key not in self.matrix_keys(kind):
            return None
        return ExpressionSource(self.handle[kind][key], f"{kind}['{key}']", n_obs)


def _labels(index: pd.Index) -> np.ndarray:
    return np.array([str(v) for v in index], dtype=object)


class AnnDataReader:
    def __init__(self, adata: Any) -> None:
        self.adata = adata
        self.label = (
            f"the AnnData object backed by {adata.filename}" if adata.isbacked else "the AnnData object"
        )

    def cell_names(self) -> np.ndarray:
        return _labels(self.adata.obs_names)

    def obs_columns(self) -> list[str]:
        return [str(c) for c in self.adata.obs.columns]

    def obs_column(self, name: str) -> pd.Series:
        return self.adata.obs[name].reset_index(drop=True)

    def var_names(self) -> np.ndarray:
        return _labels(self.adata.var_names)

    def var_columns(self) -> list[str]:
        return [str(c) for c in self.adata.var.columns]

    def var_column(self, name: str) -> pd.Series:
        return self.adata.var[name].reset_index(drop=True)

    def uns_genes(self, key: str) -> np.ndarray | None:
        names = self.adata.uns.get(f"{key}_genes")
        return None if names is None else np.asarray(names)

    def matrix_keys(self, kind: str) -> list[str]:
        return sorted(str(k) for k in getattr(self.adata, kind))

    def matrix(self, kind: str, key: str = "") -> MatrixSource | None:
        n_obs = self.adata.n_obs
        if kind == "X":
            return None if self.adata.X is None else ArraySource(self.adata.X, "X", n_obs)
        if key not in self.matrix_keys(kind):
            return None
        return ArraySource(getattr(self.adata, kind)[key], f"{kind}['{key}']", n_obs)


@contextmanager
def open_screen(data: Any) -> Iterator[ScreenReader]:
    """A reader for a path to an .h5ad file or an ``anndata.AnnData`` (in memory or backed)."""
    if isinstance(data, str | Path):
        path = Path(data)
        handle = open_h5ad(path)
        try:
            yield H5adReader(handle, str(path))
        finally:
            handle.close()
        return
    import anndata as ad

    if not isinstance(data, ad.AnnData):
        raise DataError(
            f"Expected a path to an .h5ad file or an anndata.AnnData, got {type(data).__name__}."
        )
    yield AnnDataReader(data)
