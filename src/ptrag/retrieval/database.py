"""Stage 1 of PT-RAG: the database of training perturbations and cosine top-K neighbours.

The database holds one row per perturbation with cells in the training split (any cell type), so
no validation or test perturbation can be retrieved as a candidate. A query never retrieves itself:
its own row is masked by index before the top-K, for every query at once.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ptrag.errors import PtragError

__all__ = ["Neighbours", "RetrievalDatabase", "l2_normalise", "random_scores", "top_k"]


def random_scores(names: Sequence[str], n: int) -> np.ndarray:
    """(len(names), n) uniform scores, seeded by each name: a query's random ranking never changes."""
    return np.stack(
        [np.random.default_rng(zlib.crc32(str(name).encode())).random(n) for name in names]
    ).reshape(len(names), n)


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Positions of the ``k`` highest scores along the last axis, highest first, ties by position
    (so by name when the candidates are in name order): the one top-K of retrieval, the memory's
    neighbour ranking and the ``knn_shift`` reference. ``-inf`` scores sort last."""
    return np.argsort(-scores, axis=-1, kind="stable")[..., : max(int(k), 0)]


def l2_normalise(matrix: np.ndarray, dtype: type[np.floating] = np.float32) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return (matrix / np.maximum(norms, 1e-12)).astype(dtype)


@dataclass(frozen=True)
class Neighbours:
    """Top-K database rows per query; ``valid`` is False where fewer than K candidates exist."""

    index: np.ndarray  # (Q, K) int64 rows of the database
    cosine: np.ndarray  # (Q, K) in the database's dtype
    valid: np.ndarray  # (Q, K) bool


@dataclass(frozen=True)
class RetrievalDatabase:
    perturbations: tuple[str, ...]
    embeddings: np.ndarray  # (N, D) L2-normalised; float32 for retrieval, float64 for references

    @classmethod
    def build(
        cls, perturbations: Sequence[str], embeddings: np.ndarray, dtype: type[np.floating] = np.float32
    ) -> RetrievalDatabase:
        """``dtype``: of the stored embeddings and of every cosine computed against them (float32 in
        models and checkpoints; the ``knn_shift`` reference ranks in float64)."""
        if len(perturbations) != len(embeddings):
            raise PtragError("Retrieval database: one embedding per training perturbation is required.")
        if len(set(perturbations)) != len(perturbations):
            raise PtragError("Retrieval database: training perturbations must be unique.")
        return cls(tuple(perturbations), l2_normalise(np.asarray(embeddings, dtype=dtype), dtype))

    def __len__(self) -> int:
        return len(self.perturbations)

    def row_of(self, names: Sequence[str]) -> np.ndarray:
        """Database row of each name, or -1 for names that are not in the database."""
        lookup = {name: i for i, name in enumerate(self.perturbations)}
        return np.array([lookup.get(name, -1) for name in names], dtype=np.int64)

    def neighbours(
        self, query_names: Sequence[str], query_embeddings: np.ndarray, k: int, shuffled: bool = False
    ) -> Neighbours:
        """The K most cosine-similar database rows of each query, never the query itself.

        ``shuffled`` (an ablation) takes K random rows instead, the same for a query name in every
        run, still never the query itself; their true cosines are reported.
        """
        dtype = self.embeddings.dtype.type
        queries = l2_normalise(np.asarray(query_embeddings, dtype=dtype), dtype)
        cosines = queries @ self.embeddings.T
        scores = random_scores(query_names, len(self)) if shuffled else cosines.copy()
        own_row = self.row_of(query_names)
        has_row = own_row >= 0
        scores[np.flatnonzero(has_row), own_row[has_row]] = -np.inf
        k_eff = min(k, len(self))
        if k_eff == 0:
            empty = np.zeros((len(queries), k), dtype=np.int64)
            return Neighbours(empty, np.zeros((len(queries), k), dtype), np.zeros((len(queries), k), bool))
        index = top_k(scores, k_eff)
        valid = np.isfinite(np.take_along_axis(scores, index, axis=1))
        cosine = np.take_along_axis(cosines, index, axis=1)
        pad = k - k_eff
        if pad:
            index = np.pad(index, ((0, 0), (0, pad)))
            cosine = np.pad(cosine, ((0, 0), (0, pad)))
            valid = np.pad(valid, ((0, 0), (0, pad)))
        index = np.where(valid, index, 0)
        cosine = np.where(valid, cosine, 0.0).astype(dtype)
        return Neighbours(index.astype(np.int64), cosine, valid)
