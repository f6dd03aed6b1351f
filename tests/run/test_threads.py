"""``train.num_threads = 0`` keeps the process's own thread setting instead of imposing one."""

from __future__ import annotations

import os
import subprocess
import sys

import torch

from ptrag.run.threads import MAX_DEFAULT_THREADS, choose_threads, configure_threads

PROBE = (
    "import torch\n"
    "from ptrag.run.threads import configure_threads\n"
    "before = torch.get_num_threads()\n"
    "print(before, configure_threads(0), torch.get_num_threads(), configure_threads(2))\n"
)


def _probe(**env: str) -> list[int]:
    environment = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    finished = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120, env={**environment, **env}
    )
    assert finished.returncode == 0, finished.stderr
    return [int(v) for v in finished.stdout.split()]


def test_omp_num_threads_is_respected() -> None:
    # 1 thread although the machine has more cores (the old default took one per core, up to 4).
    before, chosen, after, explicit = _probe(OMP_NUM_THREADS="1")
    assert before == chosen == after == 1
    assert explicit == 2  # an explicit train.num_threads still wins


def test_without_omp_num_threads_torch_default_is_capped(monkeypatch) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 16)  # torch's default on a 16-core machine
    assert choose_threads(0) == MAX_DEFAULT_THREADS


def test_a_lower_torch_setting_in_the_process_is_kept(monkeypatch) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert choose_threads(0) == 1 and configure_threads(0) == 1 and torch.get_num_threads() == 1
        assert choose_threads(5) == 5
    finally:
        torch.set_num_threads(previous)
