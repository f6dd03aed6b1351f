"""Run a benchmark's splits side by side, one process each.

ptrag's models are small: a training step gains little from a second thread, while two processes
keep both cores busy. On the 2-core machine the main job's benchmark (replogle-like, 4 arms, both
splits) took 278 s as two one-thread processes against 508 s one split after the other (README,
Performance). Each split is independent — its own runs, seeds, predictions and references — so
running them in separate processes changes nothing but the thread count each run's arithmetic
uses (per-method means moved by at most 0.0005 in that comparison).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

from ptrag.benchmark.runner import BenchmarkRuns, load_benchmark_dataset, run_arms
from ptrag.data.dataset import PerturbationDataset

__all__ = ["available_memory", "choose_jobs", "run_splits"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SplitJob:
    """Everything one split's process needs (picklable: paths and names, not the loaded data)."""

    data_path: Path
    split_path: Path
    out: Path
    split_name: str
    arms: tuple[str, ...]
    seeds: int
    config_source: str
    overrides: tuple[str, ...]
    threads: int
    log_level: int


def available_cores() -> int:
    """The cores this process may run on (the affinity mask on Linux, else the CPU count)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


# What one split's process holds beside its copy of the data: torch, the model, the predictions and
# their evaluation (about 1 GB RSS on replogle-like, whose data take 145 MB).
PROCESS_OVERHEAD_BYTES = 1 << 30


def available_memory() -> int | None:
    """Bytes of memory available to new processes (Linux MemAvailable), or None when unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def choose_jobs(
    requested: int,
    n_splits: int,
    cores: int | None = None,
    data_bytes: int = 0,
    available_bytes: int | None = None,
) -> int:
    """Processes for ``n_splits`` splits: ``requested`` when > 0 (at most one per split), else one per
    split up to the cores and as many as the available memory holds, each with its own copy of the
    data (``data_bytes``) — one process whatever the memory says."""
    if requested > 0:
        return min(requested, max(1, n_splits))
    jobs = max(1, min(n_splits, cores if cores is not None else available_cores()))
    if available_bytes is not None and jobs > 1:
        per_job = data_bytes + PROCESS_OVERHEAD_BYTES
        fitting = max(1, int(0.8 * available_bytes) // per_job)
        if fitting < jobs:
            log.info(
                "[benchmark] %d process%s, not %d: each holds its own copy of the data (%.1f GiB with "
                "its work) and %.1f GiB of memory is available (--jobs overrides)",
                fitting,
                "" if fitting == 1 else "es",
                jobs,
                per_job / 2**30,
                available_bytes / 2**30,
            )
            jobs = fitting
    return jobs


def _run_split_job(job: SplitJob) -> BenchmarkRuns:
    # A spawned process starts bare: its own log handler, its share of the cores, the data read once.
    import torch

    logging.basicConfig(level=job.log_level, format="%(levelname)s: %(message)s")
    torch.set_num_threads(job.threads)
    dataset = load_benchmark_dataset(job.data_path, job.config_source, job.overrides)
    return run_arms(
        dataset,
        job.split_path,
        job.out,
        job.split_name,
        job.arms,
        job.seeds,
        job.config_source,
        job.overrides,
        progress=False,
    )


def run_splits(
    dataset: PerturbationDataset,
    data_path: Path,
    splits: Sequence[tuple[str, Path]],
    out: Path,
    arms: Sequence[str],
    seeds: int,
    config_source: str,
    overrides: Sequence[str],
    progress: bool,
    jobs: int,
) -> dict[str, BenchmarkRuns]:
    """split name → its runs, in the order given. ``jobs`` = 1 runs them here one after the other
    (with progress bars); more runs them in that many processes, the cores shared evenly."""
    if jobs <= 1 or len(splits) <= 1:
        return {
            name: run_arms(dataset, path, out, name, arms, seeds, config_source, overrides, progress)
            for name, path in splits
        }
    threads = max(1, available_cores() // jobs)
    log.info(
        "[benchmark] running the %s splits in %d processes (%d torch thread%s each)",
        " and ".join(name for name, _ in splits),
        jobs,
        threads,
        "" if threads == 1 else "s",
    )
    level = logging.getLogger().getEffectiveLevel()
    tasks = [
        SplitJob(
            data_path, path, out, name, tuple(arms), seeds, config_source, tuple(overrides), threads, level
        )
        for name, path in splits
    ]
    with ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn")) as pool:
        results = list(pool.map(_run_split_job, tasks))
    return {task.split_name: runs for task, runs in zip(tasks, results, strict=True)}
