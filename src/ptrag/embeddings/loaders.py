"""Load gene embeddings from the bundled table, GenePT's pickle, .npz, .csv/.tsv, .parquet or .pt.

Formats (chosen by file suffix):

- ``bundled``: the package's 384-d offline MiniLM embeddings.
- ``.pkl`` / ``.pickle``: GenePT's ``{symbol: list of floats}`` (a DataFrame indexed by symbol works
  too). Pickles can run code when loaded: only load files you trust.
- ``.npz``: a string array of names (``symbols``, ``genes``, ``gene_names``, ``names``, ``index``)
  and a 2-D matrix (``matrix``, ``embeddings``, ``embedding``, ``X``, ``vectors``); any file with
  exactly one 1-D string array and one 2-D numeric array is accepted whatever the key names.
- ``.csv`` / ``.tsv`` / ``.txt`` (optionally ``.gz``) and ``.parquet``: first column is the symbol,
  every other column one dimension.
- ``.pt`` / ``.pth``: a dict ``{symbol: tensor}`` or ``{"symbols": [...], "matrix": tensor}``.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ptrag.embeddings.types import GeneEmbeddings
from ptrag.errors import EmbeddingError, format_list
from ptrag.keys import BUNDLED_SOURCE

__all__ = ["load_embeddings"]

NAME_KEYS: tuple[str, ...] = ("symbols", "genes", "gene_names", "gene_symbols", "names", "index")
MATRIX_KEYS: tuple[str, ...] = ("matrix", "embeddings", "embedding", "X", "vectors", "emb")
SUPPORTED = ".pkl, .pickle, .npz, .csv, .tsv, .txt (optionally .gz), .parquet, .pt, .pth or 'bundled'"


def _bad(path: Path, problem: str) -> EmbeddingError:
    return EmbeddingError(f"Cannot read gene embeddings from {path}: {problem}")


def _from_mapping(mapping: Mapping[Any, Any], path: Path) -> tuple[list[str], np.ndarray]:
    if not mapping:
        raise _bad(path, "the file holds no genes.")
    symbols, rows, lengths = [], [], set()
    for symbol, vector in mapping.items():
        if hasattr(vector, "detach"):  # a torch tensor
            vector = vector.detach().cpu().numpy()
        try:
            row = np.asarray(vector, dtype=np.float32).reshape(-1)
        except (TypeError, ValueError):
            raise _bad(path, f"the value for {symbol!r} is not a vector of numbers.") from None
        symbols.append(str(symbol))
        rows.append(row)
        lengths.add(row.size)
    if len(lengths) != 1:
        raise _bad(
            path, f"vectors have different lengths {sorted(lengths)[:10]}; all must have one dimension."
        )
    return symbols, np.stack(rows)


def _load_pickle(path: Path) -> tuple[list[str], np.ndarray]:
    try:
        with path.open("rb") as handle:
            obj = pickle.load(handle)
    except Exception as exc:  # pickle raises many unrelated types on corrupt input
        raise _bad(path, f"not a readable pickle ({type(exc).__name__}: {exc}).") from exc
    if isinstance(obj, pd.DataFrame):
        return [str(s) for s in obj.index], _numeric(obj, path)
    if not isinstance(obj, Mapping):
        raise _bad(path, f"expected a dict {{symbol: vector}} (GenePT's format), found {type(obj).__name__}.")
    return _from_mapping(obj, path)


def _pick(arrays: Mapping[str, np.ndarray], keys: Sequence[str]) -> str | None:
    lower = {key.lower(): key for key in arrays}
    for key in keys:
        if key.lower() in lower:
            return lower[key.lower()]
    return None


def _load_npz(path: Path) -> tuple[list[str], np.ndarray, str | None]:
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except Exception as exc:  # zipfile, OSError, ValueError on damaged or pickled content
        raise _bad(path, f"not a readable .npz ({type(exc).__name__}: {exc}).") from exc
    names_key, matrix_key = _pick(arrays, NAME_KEYS), _pick(arrays, MATRIX_KEYS)
    if names_key is None or matrix_key is None:
        strings = [k for k, a in arrays.items() if a.ndim == 1 and a.dtype.kind in "US"]
        numeric = [k for k, a in arrays.items() if a.ndim == 2 and a.dtype.kind in "fiu"]
        if len(strings) == 1 and len(numeric) == 1:
            names_key, matrix_key = strings[0], numeric[0]
        else:
            raise _bad(
                path,
                f"arrays {format_list(arrays)} found; expected gene names under one of "
                f"{format_list(NAME_KEYS)} and a matrix under one of {format_list(MATRIX_KEYS)}.",
            )
    matrix = arrays[matrix_key]
    if matrix.ndim != 2 or matrix.dtype.kind not in "fiu":
        raise _bad(
            path, f"array {matrix_key!r} must be a 2-D numeric matrix, found {matrix.dtype} {matrix.shape}."
        )
    names = arrays[names_key]
    if names.ndim != 1 or len(names) != matrix.shape[0]:
        raise _bad(path, f"{len(names)} names in {names_key!r} but {matrix.shape[0]} rows in {matrix_key!r}.")
    template = str(arrays["text_template"]) if "text_template" in arrays else None
    return [str(s) for s in names], matrix, template or None


def _numeric(frame: pd.DataFrame, path: Path) -> np.ndarray:
    if frame.shape[1] == 0:
        raise _bad(path, "no embedding columns after the symbol column.")
    converted = frame.apply(pd.to_numeric, errors="coerce")
    bad_columns = [c for c in frame.columns if converted[c].isna().any()]
    if bad_columns:
        raise _bad(path, f"non-numeric or missing values in column(s) {format_list(bad_columns)}.")
    return converted.to_numpy(dtype=np.float32)


def _load_table(path: Path, suffixes: list[str]) -> tuple[list[str], np.ndarray]:
    try:
        if suffixes[-1] == ".parquet":
            frame = pd.read_parquet(path)
            # A parquet written with the symbols as index and only numeric columns.
            if frame.shape[1] and frame.iloc[:, 0].dtype.kind in "fiu" and frame.index.dtype == object:
                frame = frame.reset_index()
        else:
            sep = "\t" if ".tsv" in suffixes or ".txt" in suffixes else ","
            frame = pd.read_csv(path, sep=sep)
    except Exception as exc:  # pandas/pyarrow raise many types on malformed files
        raise _bad(path, f"not a readable table ({type(exc).__name__}: {exc}).") from exc
    if frame.shape[0] == 0:
        raise _bad(path, "the table has no rows.")
    symbols = frame.iloc[:, 0]
    if symbols.isna().any():
        raise _bad(path, f"the first column ({frame.columns[0]!r}, the gene symbol) has empty values.")
    return [str(s) for s in symbols], _numeric(frame.iloc[:, 1:], path)


def _load_torch(path: Path) -> tuple[list[str], np.ndarray]:
    import torch

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises RuntimeError, UnpicklingError, EOFError ...
        raise _bad(path, f"not a readable torch file ({type(exc).__name__}: {exc}).") from exc
    if not isinstance(obj, Mapping):
        raise _bad(path, f"expected a dict, found {type(obj).__name__}.")
    names_key, matrix_key = _pick(obj, NAME_KEYS), _pick(obj, MATRIX_KEYS)
    if names_key is not None and matrix_key is not None:
        matrix = obj[matrix_key]
        matrix = matrix.detach().cpu().numpy() if hasattr(matrix, "detach") else np.asarray(matrix)
        names = list(obj[names_key])
        if matrix.ndim != 2 or matrix.shape[0] != len(names):
            raise _bad(path, f"{len(names)} names but a matrix of shape {tuple(matrix.shape)}.")
        return [str(s) for s in names], matrix.astype(np.float32)
    return _from_mapping(obj, path)


def load_embeddings(source: str | Path) -> GeneEmbeddings:
    """Load embeddings from ``"bundled"`` or a file; see the module docstring for the formats."""
    if str(source) == BUNDLED_SOURCE:
        from ptrag.embeddings.bundled import load_bundled_embeddings

        return load_bundled_embeddings()
    path = Path(source).expanduser()
    if not path.is_file():
        raise EmbeddingError(f"Gene embedding file {path} does not exist. Give a path or 'bundled'.")
    suffixes = [s.lower() for s in path.suffixes if s.lower() != ".gz"] or [""]
    kind = suffixes[-1]
    template = None
    if kind in (".pkl", ".pickle"):
        symbols, matrix = _load_pickle(path)
    elif kind == ".npz":
        symbols, matrix, template = _load_npz(path)
    elif kind in (".csv", ".tsv", ".txt", ".parquet"):
        symbols, matrix = _load_table(path, suffixes)
    elif kind in (".pt", ".pth"):
        symbols, matrix = _load_torch(path)
    else:
        raise EmbeddingError(f"Unknown gene embedding format {path.name!r}; use {SUPPORTED}.")
    if matrix.shape[1] == 0:
        raise _bad(path, "the vectors have zero dimensions.")
    try:
        return GeneEmbeddings(symbols=tuple(symbols), matrix=matrix, source=str(path), text_template=template)
    except EmbeddingError as exc:
        raise _bad(path, str(exc)) from exc
