"""Deliberate CPU thread settings: oversubscribed OpenMP threads make small models many times slower."""

from __future__ import annotations

import contextlib
import logging
import os

import torch

__all__ = ["configure_threads"]

log = logging.getLogger(__name__)

# Beyond this many intra-op threads the small matmuls of ptrag's models stop getting faster.
MAX_DEFAULT_THREADS = 4


def choose_threads(requested: int = 0) -> int:
    """The intra-op thread count for ``train.num_threads`` (0 = choose).

    0 keeps what the user set for the process: OMP_NUM_THREADS when it is set (torch reads it at
    start-up), or torch's current setting (``torch.set_num_threads`` in a notebook). Only torch's
    one-thread-per-core default is capped, at 4 threads.
    """
    if requested > 0:
        return requested
    current = torch.get_num_threads()
    if os.environ.get("OMP_NUM_THREADS", "").strip():
        return current
    return max(1, min(MAX_DEFAULT_THREADS, current))


def configure_threads(requested: int = 0) -> int:
    """Set torch's intra-op threads and a single inter-op thread; return the count used."""
    threads = choose_threads(requested)
    if threads != torch.get_num_threads():
        torch.set_num_threads(threads)
    # Only settable before the first parallel region; a second call in one process is harmless.
    with contextlib.suppress(RuntimeError):
        torch.set_num_interop_threads(1)
    log.debug("torch threads: %d", threads)
    return threads
