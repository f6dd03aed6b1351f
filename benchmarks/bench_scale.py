"""Scale: peak memory and wall time on the ~1M-cell ``scale-1m`` screen, from loading to prediction.

Usage::

    python benchmarks/bench_scale.py                          # simulates scale-1m into the cache if absent
    python benchmarks/bench_scale.py --data DIR_OR_H5AD --shape cpu-small --steps 5 --predict-groups 50

``ptrag simulate --preset scale-1m`` writes ~13 GB (1M cells x 2,000 genes, counts + X_hvg) and took
~15 min on a loaded 2-core machine; it runs once into ``--cache``. One process then runs, in order:
loading (``load_dataset``), one epoch of set sampling (every training group's fixed sets, sampled
and collated as the training loop does), a short real training run (``ptrag.training.run.train``,
Lightning and all, at the paper shape by default) and prediction of some test groups from the saved
run (``predict_sets``). After each phase it records wall time, the current RSS and the process's
peak RSS (``getrusage`` high-water mark, so the last row is the peak of the whole pipeline).
Prints a table and writes ``benchmarks/results/scale.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_training import (  # the benchmark helpers live beside this script
    DEFAULT_CACHE,
    RESULTS,
    SHAPES,
    ensure_screen,
    machine_info,
    make_config,
    set_threads,
)

GOAL_PEAK_RSS_GB = 6.0


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9  # KiB on Linux


def rss_gb() -> float:
    return psutil.Process().memory_info().rss / 1e9


class Phases:
    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self._started = 0.0

    def start(self) -> None:
        self._started = time.perf_counter()

    def stop(self, name: str, **extra: Any) -> None:
        row = {
            "phase": name,
            "wall_s": time.perf_counter() - self._started,
            "rss_gb": rss_gb(),
            "peak_rss_gb": peak_rss_gb(),
            **extra,
        }
        self.rows.append(row)
        print(f"  {name:<26} {row['wall_s']:8.1f} s  peak RSS {row['peak_rss_gb']:.2f} GB", flush=True)


def epoch_of_sets(dataset: Any, prepared: Any, config: Any) -> dict[str, Any]:
    """Every training group's fixed sets, drawn and collated in batches as training does."""
    from ptrag.data.sets import SetSampler
    from ptrag.run.tensors import SetTensorizer

    t = config.train
    sampler = SetSampler(dataset, prepared.groups_for("train"), t.cell_set_len, t.seed)
    sets = sampler.fixed_sets()
    tensorize = SetTensorizer(dataset, prepared.spec, config.model.anchor)
    for start in range(0, len(sets), t.sets_per_batch):
        tensorize(sets[start : start + t.sets_per_batch])
    return {"sets": len(sets), "batches": -(-len(sets) // t.sets_per_batch)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, help="screen folder (data.h5ad + split.toml) or .h5ad")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="where to simulate scale-1m")
    parser.add_argument("--shape", default="paper", choices=list(SHAPES), help="training shape")
    parser.add_argument("--arm", default="ptrag", help="arm to train (default ptrag)")
    parser.add_argument("--steps", type=int, default=5, help="training steps")
    parser.add_argument("--predict-groups", type=int, default=40, help="test groups to predict")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    parser.add_argument("--out", type=Path, default=RESULTS / "scale.json")
    args = parser.parse_args(argv)
    set_threads(args.threads)
    data = ensure_screen(args.data, args.cache, preset="scale-1m")
    h5ad = data / "data.h5ad" if data.is_dir() else data
    split_file = (data if data.is_dir() else data.parent) / "split.toml"

    from ptrag.data.loading import load_dataset
    from ptrag.data.splits import Split
    from ptrag.prediction.predict import predict_sets
    from ptrag.run.checkpoint import Checkpoint
    from ptrag.training.prepare import prepare
    from ptrag.training.run import train

    config = make_config(
        args.shape,
        args.arm,
        args.threads,
        (f"train.max_steps={args.steps}", f"train.val_every={args.steps}", "train.val_sets=64"),
    )
    report: dict[str, Any] = {"benchmark": "scale", "data": str(h5ad), "file_gb": h5ad.stat().st_size / 1e9}
    report["machine"] = machine_info(args.threads)
    report["config"] = {"shape": args.shape, "arm": args.arm, "steps": args.steps}
    phases = Phases()
    print(f"rss at start {rss_gb():.2f} GB; file {report['file_gb']:.1f} GB", flush=True)

    phases.start()
    dataset = load_dataset(h5ad, config.data, set_len=config.train.cell_set_len)
    split = Split.read(split_file)
    phases.stop(
        "load",
        cells=dataset.n_cells,
        genes=dataset.n_genes,
        expression_gb=dataset.expression.nbytes / 1e9,
        storage=dataset.expression_source,
    )

    phases.start()
    prepared = prepare(dataset, split, config)
    phases.stop("prepare (split, database)", train_groups=len(prepared.groups_for("train")))

    phases.start()
    epoch = epoch_of_sets(dataset, prepared, config)
    phases.stop("one epoch of set sampling", **epoch)

    with tempfile.TemporaryDirectory(prefix="ptrag_scale_") as tmp:
        run_dir = Path(tmp) / "run"
        phases.start()
        train(config, dataset, split, run_dir, progress=False)
        phases.stop(f"train {args.steps} steps ({args.shape})")

        phases.start()
        trained = Checkpoint.load(run_dir)
        groups = prepared.groups_for("test")[: args.predict_groups]
        prediction = predict_sets(trained, dataset, groups, progress=False)
        cells = int((prediction.adata_pred.obs["target_gene"] != dataset.control_label).sum())
        phases.stop(f"predict {len(groups)} groups", cells=cells)
        phases.rows[-1]["cells_per_s"] = cells / phases.rows[-1]["wall_s"]

    report["phases"] = phases.rows
    report["peak_rss_gb"] = peak_rss_gb()
    report["goal_peak_rss_gb"] = GOAL_PEAK_RSS_GB
    report["machine"]["load_average_after"] = list(os.getloadavg())
    print(f"\nthreads={report['machine']['torch_threads']}  load average={report['machine']['load_average']}")
    header = f"{'phase':<30}{'wall s':>9}{'RSS GB':>9}{'peak RSS GB':>13}"
    print(header + "\n" + "-" * len(header))
    for row in phases.rows:
        print(f"{row['phase']:<30}{row['wall_s']:>9.1f}{row['rss_gb']:>9.2f}{row['peak_rss_gb']:>13.2f}")
    verdict = "meets" if report["peak_rss_gb"] <= GOAL_PEAK_RSS_GB else "misses"
    print(f"peak RSS {report['peak_rss_gb']:.2f} GB {verdict} the {GOAL_PEAK_RSS_GB:.0f} GB goal")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
