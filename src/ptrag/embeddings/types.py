"""The one gene-embedding type every other package consumes."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ptrag.errors import EmbeddingError

__all__ = ["GeneEmbeddings"]


@dataclass(frozen=True, eq=False)
class GeneEmbeddings:
    """Ordered gene symbols and their embedding matrix (float32, one row per symbol)."""

    symbols: tuple[str, ...]
    matrix: np.ndarray
    source: str
    text_template: str | None = None
    _positions: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        matrix = np.asarray(self.matrix, dtype=np.float32)
        if matrix.ndim != 2:
            raise EmbeddingError(
                f"Embeddings from {self.source} must be a 2-D matrix, got shape {matrix.shape}."
            )
        if matrix.shape[0] != len(self.symbols):
            raise EmbeddingError(
                f"Embeddings from {self.source} have {len(self.symbols)} symbols but {matrix.shape[0]} rows."
            )
        if not np.isfinite(matrix).all():
            bad = [self.symbols[i] for i in np.where(~np.isfinite(matrix).all(axis=1))[0][:10]]
            raise EmbeddingError(f"Embeddings from {self.source} contain NaN or inf (genes {bad}).")
        symbols = tuple(str(s) for s in self.symbols)
        positions: dict[str, int] = {}
        duplicates = []
        for i, symbol in enumerate(symbols):
            if symbol in positions:
                duplicates.append(symbol)
            positions[symbol] = i
        if duplicates:
            raise EmbeddingError(
                f"Embeddings from {self.source} list genes more than once: {duplicates[:20]}."
            )
        object.__setattr__(self, "symbols", symbols)
        object.__setattr__(self, "matrix", matrix)
        object.__setattr__(self, "_positions", positions)

    @property
    def dim(self) -> int:
        return int(self.matrix.shape[1])

    def __len__(self) -> int:
        return len(self.symbols)

    def __contains__(self, symbol: object) -> bool:
        return symbol in self._positions

    def index(self, symbol: str) -> int:
        """Row of ``symbol`` (exact match); EmbeddingError when absent."""
        try:
            return self._positions[symbol]
        except KeyError:
            raise EmbeddingError(f"Gene {symbol!r} has no embedding in {self.source}.") from None

    def vector(self, symbol: str) -> np.ndarray:
        return self.matrix[self.index(symbol)]

    def normalized(self) -> np.ndarray:
        """Rows scaled to unit L2 norm (zero rows stay zero)."""
        norms = np.linalg.norm(self.matrix, axis=1, keepdims=True)
        return self.matrix / np.where(norms > 0, norms, 1.0)

    def cosine_neighbors(self, symbol: str, k: int = 10) -> list[tuple[str, float]]:
        """The ``k`` genes most similar to ``symbol`` by cosine, itself excluded, best first."""
        unit = self.normalized()
        row = self.index(symbol)
        scores = unit @ unit[row]
        scores[row] = -np.inf
        k = max(0, min(k, len(self.symbols) - 1))
        # Stable sort on (-score, position) so ties come out in a fixed order.
        order = np.lexsort((np.arange(len(scores)), -scores))[:k]
        return [(self.symbols[i], float(scores[i])) for i in order]
