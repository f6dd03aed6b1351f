"""Prediction speed of every arm at cpu-small: end to end through ``predict_sets`` and the forward alone.

Usage::

    python benchmarks/bench_prediction.py                 # all arms, 2 threads, replogle-like test split
    python benchmarks/bench_prediction.py --arms st --threads 2 --repeats 5

Weights are freshly initialised (speed does not depend on training; PT-RAG's keep decisions only
change which candidates are summed, not the work done). End to end covers everything
``ptrag predict`` does except writing files: building the model, the fixed n-matched sets, collate,
the forward passes, the retrieval record and the two AnnData objects. Cells/s counts predicted
perturbed cells. Prints a table and writes ``benchmarks/results/prediction.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_training import (  # the benchmark helpers live beside this script
    ARMS,
    DEFAULT_CACHE,
    RESULTS,
    ensure_screen,
    load_screen,
    machine_info,
    make_config,
    set_threads,
)

GOAL_CELLS_PER_S = 10_000


def trained_model(config: Any, prepared: Any) -> Any:
    import torch

    from ptrag.run.build import build_model
    from ptrag.run.checkpoint import Checkpoint

    torch.manual_seed(config.train.seed)
    model = build_model(config, prepared.spec)
    if config.model.output_residual == "expression":
        # The output layer starts at zero (identity map); give it weights so the work is realistic.
        torch.nn.init.normal_(model.generator.output.weight, std=0.01)
    return Checkpoint(config, prepared.spec, model.state_dict(), Path("random-init"), 0)


def time_forward(trained: Any, dataset: Any, groups: list, repeats: int) -> tuple[float, int]:
    """Median seconds for the forward passes over every prediction batch, and the cells predicted."""
    import torch

    from ptrag.data.sets import SetSampler
    from ptrag.prediction.core import MIN_SETS_PER_BATCH
    from ptrag.run.tensors import SetTensorizer

    model = trained.model()
    sampler = SetSampler(dataset, groups, trained.config.train.cell_set_len, 0)
    sets = sampler.fixed_sets()
    size = max(trained.config.train.sets_per_batch, MIN_SETS_PER_BATCH)  # what predict_sets uses
    tensorize = SetTensorizer(dataset, trained.spec, trained.config.model.anchor)
    batches = [tensorize(sets[i : i + size]) for i in range(0, len(sets), size)]
    cells = sum(s.n_real for s in sets)

    def run() -> None:
        with torch.inference_mode():
            for b in batches:
                model.on_batch(b)

    run()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times), cells


def bench_arm(arm: str, dataset: Any, split: Any, threads: int, repeats: int) -> dict[str, Any]:
    from ptrag.prediction.predict import predict_sets
    from ptrag.training.prepare import prepare

    config = make_config("cpu-small", arm, threads)
    prepared = prepare(dataset, split, config)
    trained = trained_model(config, prepared)
    groups = prepared.groups_for("test")
    predict_sets(trained, dataset, groups, progress=False)  # warm-up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        prediction = predict_sets(trained, dataset, groups, progress=False)
        times.append(time.perf_counter() - started)
    end_to_end = statistics.median(times)
    cells = int((prediction.adata_pred.obs["target_gene"] != dataset.control_label).sum())
    forward, forward_cells = time_forward(trained, dataset, groups, repeats)
    assert forward_cells == cells
    return {
        "groups": len(groups),
        "cells": cells,
        "end_to_end_s": end_to_end,
        "end_to_end_cells_per_s": cells / end_to_end,
        "forward_s": forward,
        "forward_cells_per_s": cells / forward,
        "retrieval_record_rows": len(prediction.retrieval),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, help="screen folder (data.h5ad + split.toml) or .h5ad")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="where to simulate the screen")
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=ARMS)
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repetitions (median reported)")
    parser.add_argument("--out", type=Path, default=RESULTS / "prediction.json")
    args = parser.parse_args(argv)
    set_threads(args.threads)
    data = ensure_screen(args.data, args.cache)
    dataset, split = load_screen(data, make_config("cpu-small", "st", args.threads).train.cell_set_len)
    report: dict[str, Any] = {"benchmark": "prediction", "shape": "cpu-small", "data": str(data)}
    report["machine"] = machine_info(args.threads)
    report["arms"] = {}
    for arm in args.arms:
        report["arms"][arm] = row = bench_arm(arm, dataset, split, args.threads, args.repeats)
        print(
            f"  {arm:<12} end to end {row['end_to_end_cells_per_s']:8.0f} cells/s, "
            f"forward {row['forward_cells_per_s']:8.0f} cells/s",
            flush=True,
        )
    report["machine"]["load_average_after"] = list(os.getloadavg())
    report["goal_cells_per_s"] = GOAL_CELLS_PER_S
    print(f"\nthreads={report['machine']['torch_threads']}  load average={report['machine']['load_average']}")
    header = f"{'arm':<13}{'cells':>7}{'end-to-end cells/s':>20}{'forward cells/s':>17}"
    print(header + "\n" + "-" * len(header))
    for arm, r in report["arms"].items():
        print(
            f"{arm:<13}{r['cells']:>7}{r['end_to_end_cells_per_s']:>20.0f}{r['forward_cells_per_s']:>17.0f}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
