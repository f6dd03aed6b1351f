"""Deliberate CPU thread settings: oversubscribed OpenMP threads make small models many times slower."""

from __future__ import annotations

import contextlib
import logging
import os

import torch

log = logging.getLogger(__name__)


def default_threads() -> int:
    """One thread per available core, at most 4 (beyond that the small matmuls stop scaling)."""
    try:
        available = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        available = os.cpu_count() or 1
    return max(1, min(4, available))


def configure_threads(requested: int = 0) -> int:
    """Set torch's intra-op threads (0 = choose) and a single inter-op thread; return the count used."""
    threads = requested if requested > 0 else default_threads()
    torch.set_num_threads(threads)
    # Only settable before the first parallel region; a second call in one process is harmless.
    with contextlib.suppress(RuntimeError):
        torch.set_num_interop_threads(1)
    log.debug("torch threads: %d", threads)
    return threads
