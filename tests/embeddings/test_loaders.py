"""Every embedding file format loads to the same GeneEmbeddings; malformed files fail clearly."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from ptrag.embeddings import GeneEmbeddings, load_embeddings
from ptrag.embeddings.build import save_embeddings_npz
from ptrag.errors import EmbeddingError

SYMBOLS = ("RPL7", "NDUFS3", "POLR2G", "TP53")


@pytest.fixture
def matrix() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(len(SYMBOLS), 6)).astype(np.float32)


def _check(embeddings: GeneEmbeddings, matrix: np.ndarray, path: Path) -> None:
    assert embeddings.symbols == SYMBOLS
    assert embeddings.matrix.dtype == np.float32
    assert embeddings.dim == 6
    np.testing.assert_allclose(embeddings.matrix, matrix, rtol=1e-6, atol=1e-6)
    assert embeddings.source == str(path)


def test_genept_pickle(tmp_path: Path, matrix: np.ndarray) -> None:
    path = tmp_path / "GenePT_gene_embedding_ada_text.pickle"
    with path.open("wb") as handle:
        pickle.dump({s: [float(v) for v in row] for s, row in zip(SYMBOLS, matrix, strict=True)}, handle)
    _check(load_embeddings(path), matrix, path)


def test_pickled_dataframe(tmp_path: Path, matrix: np.ndarray) -> None:
    path = tmp_path / "emb.pkl"
    pd.DataFrame(matrix, index=list(SYMBOLS)).to_pickle(path)
    _check(load_embeddings(path), matrix, path)


@pytest.mark.parametrize(
    ("names_key", "matrix_key"), [("symbols", "matrix"), ("gene_names", "embeddings"), ("whatever", "values")]
)
def test_npz_key_names(tmp_path: Path, matrix: np.ndarray, names_key: str, matrix_key: str) -> None:
    path = tmp_path / "emb.npz"
    np.savez(path, **{names_key: np.array(SYMBOLS), matrix_key: matrix})
    _check(load_embeddings(path), matrix, path)


def test_npz_round_trip_keeps_template(tmp_path: Path, matrix: np.ndarray) -> None:
    path = tmp_path / "built.npz"
    save_embeddings_npz(
        path, GeneEmbeddings(SYMBOLS, matrix, "test", text_template="v1"), texts=list(SYMBOLS)
    )
    loaded = load_embeddings(path)
    _check(loaded, matrix, path)
    assert loaded.text_template == "v1"


@pytest.mark.parametrize("name", ["emb.csv", "emb.tsv", "emb.csv.gz"])
def test_delimited_tables(tmp_path: Path, matrix: np.ndarray, name: str) -> None:
    path = tmp_path / name
    frame = pd.DataFrame(matrix, columns=[f"d{i}" for i in range(6)])
    frame.insert(0, "gene", list(SYMBOLS))
    frame.to_csv(path, sep="\t" if ".tsv" in name else ",", index=False)
    _check(load_embeddings(path), matrix, path)


def test_parquet_first_column_and_index(tmp_path: Path, matrix: np.ndarray) -> None:
    frame = pd.DataFrame(matrix, columns=[f"d{i}" for i in range(6)])
    with_column = frame.copy()
    with_column.insert(0, "symbol", list(SYMBOLS))
    first = tmp_path / "column.parquet"
    with_column.to_parquet(first, index=False)
    _check(load_embeddings(first), matrix, first)
    indexed = tmp_path / "index.parquet"
    frame.set_axis(list(SYMBOLS)).to_parquet(indexed)
    _check(load_embeddings(indexed), matrix, indexed)


def test_torch_dicts(tmp_path: Path, matrix: np.ndarray) -> None:
    per_gene = tmp_path / "per_gene.pt"
    torch.save({s: torch.from_numpy(row.copy()) for s, row in zip(SYMBOLS, matrix, strict=True)}, per_gene)
    _check(load_embeddings(per_gene), matrix, per_gene)
    stacked = tmp_path / "stacked.pt"
    torch.save({"genes": list(SYMBOLS), "embeddings": torch.from_numpy(matrix)}, stacked)
    _check(load_embeddings(stacked), matrix, stacked)


def test_bundled_source() -> None:
    bundled = load_embeddings("bundled")
    assert bundled.source == "bundled"
    assert bundled.dim == 384
    assert "RPL7" in bundled


def _message(path: Path) -> str:
    with pytest.raises(EmbeddingError) as info:
        load_embeddings(path)
    return str(info.value)


def test_malformed_files_name_file_and_problem(tmp_path: Path, matrix: np.ndarray) -> None:
    ragged = tmp_path / "ragged.pkl"
    ragged.write_bytes(pickle.dumps({"A": [1.0, 2.0], "B": [1.0]}))
    assert str(ragged) in _message(ragged) and "different lengths" in _message(ragged)

    not_dict = tmp_path / "list.pkl"
    not_dict.write_bytes(pickle.dumps([1, 2, 3]))
    assert "expected a dict" in _message(not_dict)

    garbage = tmp_path / "garbage.pkl"
    garbage.write_bytes(b"not a pickle at all")
    assert "not a readable pickle" in _message(garbage)

    no_names = tmp_path / "nonames.npz"
    np.savez(no_names, a=matrix, b=matrix)
    assert "expected gene names" in _message(no_names)

    truncated = tmp_path / "truncated.npz"
    np.savez(tmp_path / "full.npz", symbols=np.array(SYMBOLS), matrix=matrix)
    truncated.write_bytes((tmp_path / "full.npz").read_bytes()[:100])
    assert str(truncated) in _message(truncated)

    mismatched = tmp_path / "mismatch.npz"
    np.savez(mismatched, symbols=np.array(SYMBOLS[:2]), matrix=matrix)
    assert "2 names" in _message(mismatched)

    text_column = tmp_path / "text.csv"
    text_column.write_text("gene,d0,d1\nRPL7,0.1,abc\nTP53,0.2,0.3\n")
    assert "'d1'" in _message(text_column)

    duplicated = tmp_path / "dup.csv"
    duplicated.write_text("gene,d0\nRPL7,0.1\nRPL7,0.2\n")
    assert "more than once" in _message(duplicated) and "RPL7" in _message(duplicated)

    non_finite = tmp_path / "nan.npz"
    with_nan = matrix.copy()
    with_nan[1, 2] = np.nan
    np.savez(non_finite, symbols=np.array(SYMBOLS), matrix=with_nan)
    assert "NaN" in _message(non_finite) and "NDUFS3" in _message(non_finite)

    unknown = tmp_path / "emb.h5"
    unknown.write_text("x")
    assert "Unknown gene embedding format" in _message(unknown)

    assert "does not exist" in _message(tmp_path / "absent.npz")


def test_gene_embeddings_neighbours_exclude_self_and_sort() -> None:
    matrix = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [-1.0, 0.0]], dtype=np.float32)
    embeddings = GeneEmbeddings(("A", "B", "C", "D"), matrix, "toy")
    neighbours = embeddings.cosine_neighbors("A", k=3)
    assert [name for name, _ in neighbours] == ["B", "C", "D"]
    assert neighbours[0][1] == pytest.approx(0.9 / np.hypot(0.9, 0.1))
    assert neighbours[2][1] == pytest.approx(-1.0)
    assert embeddings.index("C") == 2
    with pytest.raises(EmbeddingError, match="'Z'"):
        embeddings.index("Z")
    with pytest.raises(EmbeddingError, match="3 symbols but 4 rows"):
        GeneEmbeddings(("A", "B", "C"), matrix, "toy")
