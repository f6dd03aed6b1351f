"""Splits run side by side in processes give the same tables as one after the other."""

from __future__ import annotations

import pandas as pd
from test_benchmark_pipeline import SMALL

from ptrag.benchmark.parallel import choose_jobs
from ptrag.benchmark.pipeline import run_benchmark


def test_jobs_are_one_per_split_up_to_the_cores_unless_asked() -> None:
    assert choose_jobs(0, n_splits=2, cores=2) == 2
    assert choose_jobs(0, n_splits=2, cores=1) == 1
    assert choose_jobs(0, n_splits=1, cores=16) == 1
    assert choose_jobs(3, n_splits=2, cores=16) == 2  # no idle process for a split that is not there
    assert choose_jobs(1, n_splits=2, cores=16) == 1


def test_jobs_are_as_many_as_the_memory_holds(caplog) -> None:
    gib = 2**30
    # Each process holds its copy of the data plus about 1 GiB; 80 % of what is available is used.
    assert choose_jobs(0, n_splits=2, cores=2, data_bytes=gib, available_bytes=24 * gib) == 2
    with caplog.at_level("INFO"):
        assert choose_jobs(0, n_splits=2, cores=2, data_bytes=5 * gib, available_bytes=10 * gib) == 1
    assert "1 process, not 2" in caplog.text and "10.0 GiB of memory is available" in caplog.text
    assert choose_jobs(0, n_splits=4, cores=8, data_bytes=2 * gib, available_bytes=12 * gib) == 3
    assert choose_jobs(0, n_splits=2, cores=2, data_bytes=50 * gib, available_bytes=gib) == 1
    assert choose_jobs(2, n_splits=2, cores=2, data_bytes=50 * gib, available_bytes=gib) == 2  # asked
    assert choose_jobs(0, n_splits=2, cores=2, data_bytes=50 * gib, available_bytes=None) == 2


def test_splits_in_processes_match_splits_in_sequence(tiny_screen, tmp_path) -> None:
    # One torch thread per run (SMALL sets train.num_threads=1), so the arithmetic is the same.
    common = {"data_dir": tiny_screen, "arms": ("st",), "seeds": 1, "overrides": SMALL, "progress": False}
    sequential = run_benchmark(tmp_path / "one", jobs=1, **common)
    parallel = run_benchmark(tmp_path / "two", jobs=2, **common)
    assert sequential["info"]["jobs"] == 1 and parallel["info"]["jobs"] == 2
    one = pd.read_csv(tmp_path / "one" / "results_all.csv")
    two = pd.read_csv(tmp_path / "two" / "results_all.csv")
    assert set(one["split"]) == {"fewshot", "unseen"}
    pd.testing.assert_frame_equal(one, two)
    for split in ("fewshot", "unseen"):
        assert (tmp_path / "two" / "runs" / split / "st-seed0" / "checkpoints" / "best.ckpt").is_file()
