"""Cache of encoded texts, so a gene is encoded once per text, template and model.

Keyed by a hash of the exact text: a vector depends only on the text and the encoder, so changing
the annotation, the template or a gene's GO terms changes the key and the text is encoded afresh.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ptrag.embeddings.encoder import EMBEDDING_DIM, MODEL_NAME
from ptrag.errors import OutputError
from ptrag.io import atomic_save

__all__ = ["CACHE_ENV_VAR", "default_embedding_cache_dir", "encode_with_cache"]

logger = logging.getLogger(__name__)

CACHE_ENV_VAR = "PTRAG_EMBEDDING_CACHE"


def default_embedding_cache_dir() -> Path:
    """``$PTRAG_EMBEDDING_CACHE`` if set, else ``~/.cache/ptrag/embeddings``."""
    override = os.environ.get(CACHE_ENV_VAR)
    return Path(override).expanduser() if override else Path.home() / ".cache" / "ptrag" / "embeddings"


def text_key(text: str) -> str:
    return hashlib.sha256(f"{MODEL_NAME}\n{text}".encode()).hexdigest()[:32]


def _cache_file(cache_dir: Path) -> Path:
    return cache_dir / f"{MODEL_NAME.split('/')[-1]}.npz"


def _read(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        return {}
    try:
        with np.load(path, allow_pickle=False) as data:
            keys, matrix = data["keys"], data["matrix"]
        if matrix.ndim != 2 or matrix.shape != (len(keys), EMBEDDING_DIM):
            raise ValueError(f"shape {matrix.shape} for {len(keys)} keys")
    except (OSError, ValueError, KeyError) as exc:
        # A cache is disposable: a damaged one is rebuilt rather than trusted.
        logger.warning("Ignoring unreadable embedding cache %s (%s)", path, exc)
        return {}
    return {str(key): matrix[i] for i, key in enumerate(keys)}


def encode_with_cache(
    texts: Sequence[str],
    encode: Callable[[list[str]], np.ndarray],
    cache_dir: Path | None,
) -> tuple[np.ndarray, int]:
    """Vectors for ``texts`` (rows in order) and how many came from the cache.

    ``encode`` is called once with the texts not yet cached; ``cache_dir=None`` disables the cache.
    """
    if cache_dir is None:
        return encode(list(texts)), 0
    path = _cache_file(cache_dir)
    cached = _read(path)
    keys = [text_key(text) for text in texts]
    todo = [i for i, key in enumerate(keys) if key not in cached]
    unique_todo = list(dict.fromkeys(keys[i] for i in todo))
    if unique_todo:
        first_text = {keys[i]: texts[i] for i in reversed(todo)}
        fresh = encode([first_text[key] for key in unique_todo])
        cached.update(zip(unique_todo, fresh, strict=True))
        store_keys = np.array(list(cached), dtype=str)
        store_matrix = np.stack([cached[key] for key in store_keys]).astype(np.float32)

        def write(tmp: Path) -> None:
            with tmp.open("wb") as handle:
                np.savez(handle, keys=store_keys, matrix=store_matrix)

        try:
            atomic_save(path, write)
        except OutputError as exc:  # a read-only cache must not stop the build
            logger.warning("Could not update the embedding cache %s: %s", path, exc)
    matrix = np.stack([cached[key] for key in keys]) if keys else np.zeros((0, EMBEDDING_DIM), np.float32)
    return matrix.astype(np.float32), len(texts) - len(todo)
