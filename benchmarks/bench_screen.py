"""Genome-wide in-silico screen speed: every gene with an embedding, one cell type, pseudobulk mode.

Usage::

    python benchmarks/bench_screen.py                     # all arms, 2 threads, replogle-like, k562
    python benchmarks/bench_screen.py --arms st memory --threads 2 --cell-type rpe1

Weights are freshly initialised (speed does not depend on training; PT-RAG's keep decisions only
change which candidates are summed, not the work done). The time covers what ``ptrag screen`` does
after reading the data: embedding the 20,598 genes into the run's vocabulary, building the model,
the shared control draw, the forward passes reduced to pseudobulk, nearest evidence and the table;
writing files is timed separately. Goal: every gene for one cell type in ≤ 10 minutes on 2 cores.
Prints a table and writes ``benchmarks/results/screen.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_prediction import trained_model  # the benchmark helpers live beside this script
from bench_training import (
    ARMS,
    DEFAULT_CACHE,
    RESULTS,
    ensure_screen,
    load_screen,
    machine_info,
    make_config,
    set_threads,
)

GOAL_SECONDS = 600.0


def bench_arm(arm: str, dataset: Any, split: Any, cell_type: str, threads: int) -> dict[str, Any]:
    from ptrag.prediction.screen import screen_genes
    from ptrag.training.prepare import prepare

    config = make_config("cpu-small", arm, threads)
    prepared = prepare(dataset, split, config)
    trained = trained_model(config, prepared)
    started = time.perf_counter()
    result = screen_genes(trained, dataset, cell_type, None, progress=False)
    screen_s = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as scratch:
        started = time.perf_counter()
        result.write(Path(scratch) / "screen")
        write_s = time.perf_counter() - started
    genes = len(result.table)
    return {
        "genes": genes,
        "cells_per_gene": int(result.pseudobulk.uns["ptrag"]["n_cells_per_gene"]),
        "measured_genes": dataset.n_genes,
        "screen_s": screen_s,
        "write_s": write_s,
        "genes_per_s": genes / screen_s,
        "within_goal": screen_s + write_s <= GOAL_SECONDS,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, help="screen folder (data.h5ad + split.toml) or .h5ad")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="where to simulate the screen")
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=ARMS)
    parser.add_argument("--cell-type", default="k562")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    parser.add_argument("--out", type=Path, default=RESULTS / "screen.json")
    args = parser.parse_args(argv)
    set_threads(args.threads)
    data = ensure_screen(args.data, args.cache)
    dataset, split = load_screen(data, make_config("cpu-small", "st", args.threads).train.cell_set_len)
    report: dict[str, Any] = {"benchmark": "screen", "shape": "cpu-small", "data": str(data)}
    report["cell_type"] = args.cell_type
    report["machine"] = machine_info(args.threads)
    report["goal_seconds"] = GOAL_SECONDS
    report["arms"] = {}
    for arm in args.arms:
        report["arms"][arm] = row = bench_arm(arm, dataset, split, args.cell_type, args.threads)
        print(
            f"  {arm:<12} {row['genes']} genes in {row['screen_s']:.1f} s "
            f"({row['genes_per_s']:.0f} genes/s) + write {row['write_s']:.1f} s",
            flush=True,
        )
    report["machine"]["load_average_after"] = list(os.getloadavg())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
