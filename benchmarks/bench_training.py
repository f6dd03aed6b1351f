"""Training speed of every arm: s/step and cells/s, the cost of retrieval, and self-exclusion.

Usage::

    python benchmarks/bench_training.py                      # cpu-small + paper shape, 1 thread
    python benchmarks/bench_training.py --shapes cpu-small --arms st ptrag --steps 30
    python benchmarks/bench_training.py --data DIR_OR_H5AD --threads 4

The screen is the simulated ``replogle-like`` benchmark (2,000 genes), written once into
``--cache`` when absent. Each timed step is a full optimiser step on a real collated batch: forward,
energy loss (+ sparsity), backward, gradient clipping and Adam, exactly the work of the Lightning
training step (without Lightning's logging). The arms of a shape are built side by side and timed
in turns (step i of every arm, in rotating order, before step i + 1), so that load from other
processes on a shared machine falls on every arm alike and the ratios to ST hold even when the
absolute times do not. Both the wall time and the process's CPU time of each step are recorded
(medians, warm-up excluded); with one thread, CPU time excludes the time other processes hold the
core. Prints a table and writes ``benchmarks/results/training.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from retrieval_costs import retrieval_breakdown, self_exclusion_ratio  # beside this script

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_CACHE = Path(os.environ.get("PTRAG_BENCH_CACHE", Path.home() / ".cache" / "ptrag-bench"))
ARMS = ("st", "vanilla_rag", "ptrag", "memory")
# The two matched sizes (Arc STATE's benchmark uses the same): config preset + overrides.
SHAPES: dict[str, tuple[str, tuple[str, ...]]] = {
    "cpu-small": (
        "cpu-small",
        ("model.hidden_dim=64", "model.n_layers=2", "model.n_heads=4", "model.ff_mult=2",
         "train.cell_set_len=32", "train.sets_per_batch=8"),
    ),
    "paper": (
        "paper",
        ("model.hidden_dim=128", "model.n_layers=4", "model.n_heads=8", "retrieval.top_k=32",
         "train.cell_set_len=64", "train.sets_per_batch=64"),
    ),
}  # fmt: skip


def set_threads(threads: int) -> None:
    """Pin BLAS/OpenMP and torch threads before torch does any parallel work."""
    for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[variable] = str(threads)
    import torch

    torch.set_num_threads(threads)
    with contextlib.suppress(RuntimeError):  # already set in this process
        torch.set_num_interop_threads(1)


def machine_info(threads: int) -> dict[str, Any]:
    import torch

    return {
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "threads_requested": threads,
        "load_average": list(os.getloadavg()),
    }


def ensure_screen(data: Path | None, cache: Path, preset: str = "replogle-like") -> Path:
    """The folder (or file) of a simulated screen; simulate it into ``cache`` when absent."""
    if data is not None:
        return data
    folder = cache / preset
    if not (folder / "data.h5ad").is_file() or not (folder / "split.toml").is_file():
        print(f"simulating the {preset} screen into {folder} (once) ...", flush=True)
        command = [sys.executable, "-m", "ptrag.cli.main", "simulate", "--preset", preset]
        subprocess.run([*command, "--out", str(folder), "--overwrite", "--quiet"], check=True)
    return folder


def load_screen(data: Path, set_len: int) -> tuple[Any, Any]:
    from ptrag.data.loading import load_dataset
    from ptrag.data.splits import Split

    h5ad = data / "data.h5ad" if data.is_dir() else data
    split_file = (data if data.is_dir() else data.parent) / "split.toml"
    return load_dataset(h5ad, set_len=set_len), Split.read(split_file)


def make_config(shape: str, arm: str, threads: int, extra: tuple[str, ...] = ()) -> Any:
    from ptrag.config import load_config

    preset, overrides = SHAPES[shape]
    return load_config(preset, [*overrides, f"model.arm={arm}", f"train.num_threads={threads}", *extra])


def training_batches(dataset: Any, prepared: Any, config: Any, n: int) -> tuple[list[Any], float]:
    """``n`` real training batches (as the training loop builds them) and the median collate time."""
    from ptrag.data.sets import SetSampler
    from ptrag.run.tensors import SetTensorizer
    from ptrag.training.batches import TrainingSteps

    t = config.train
    sampler = SetSampler(dataset, prepared.groups_for("train"), t.cell_set_len, t.seed)
    tensorize = SetTensorizer(dataset, prepared.spec, config.model.anchor)
    steps = TrainingSteps(sampler, tensorize, t.sets_per_batch, t.seed, 0, n)
    batches, times = [], []
    for step in range(n):
        started = time.perf_counter()
        batches.append(steps[step])
        times.append(time.perf_counter() - started)
    return batches, statistics.median(times)


def optimiser_step(module: Any, optimiser: Any, batch: dict[str, Any]) -> None:
    """One full training step, as the Lightning loop runs it (without its logging)."""
    import torch

    optimiser.zero_grad(set_to_none=True)
    distribution, sparsity, _ = module.losses(batch)
    (distribution + sparsity).backward()
    clip = module.config.train.grad_clip
    if clip > 0:
        torch.nn.utils.clip_grad_norm_(module.parameters(), clip)
    optimiser.step()


def time_interleaved(arms: dict[str, Any], n_steps: int, warmup: int) -> dict[str, dict[str, list[float]]]:
    """Wall and CPU seconds per step of every arm, taking turns step by step (warm-up excluded).

    ``arms`` maps a name to (module, optimiser, steps) with ``steps[i]`` the batch of step i; the
    batch is collated just before its step (timed apart), so only one batch per arm is held at once.
    """
    names = list(arms)
    times: dict[str, dict[str, list[float]]] = {n: {"wall": [], "cpu": [], "collate": []} for n in names}
    for index in range(n_steps + warmup):
        shift = index % len(names)
        for name in names[shift:] + names[:shift]:
            module, optimiser, steps = arms[name]
            started = time.perf_counter()
            batch = steps[index]
            times[name]["collate"].append(time.perf_counter() - started)
            wall, cpu = time.perf_counter(), time.process_time()
            optimiser_step(module, optimiser, batch)
            if index >= warmup:
                times[name]["wall"].append(time.perf_counter() - wall)
                times[name]["cpu"].append(time.process_time() - cpu)
    return times


def bench_shape(shape: str, arms: list[str], data: Path, threads: int, steps: int, warmup: int) -> dict:
    import torch

    from ptrag.data.sets import SetSampler
    from ptrag.run.tensors import SetTensorizer
    from ptrag.training.batches import TrainingSteps
    from ptrag.training.module import PerturbationLightningModule
    from ptrag.training.prepare import prepare

    first = make_config(shape, arms[0], threads)
    t = first.train
    dataset, split = load_screen(data, t.cell_set_len)
    results: dict[str, Any] = {"shape": shape, "B": t.sets_per_batch, "S": t.cell_set_len}
    built, configs, prepared = {}, {}, {}
    for arm in arms:
        configs[arm] = config = make_config(shape, arm, threads)
        torch.manual_seed(config.train.seed)
        prepared[arm] = prepare(dataset, split, config)
        module = PerturbationLightningModule(config, prepared[arm].spec).train()
        sampler = SetSampler(dataset, prepared[arm].groups_for("train"), t.cell_set_len, t.seed)
        tensorize = SetTensorizer(dataset, prepared[arm].spec, config.model.anchor)
        batches = TrainingSteps(sampler, tensorize, t.sets_per_batch, t.seed, 0, steps + warmup)
        built[arm] = (module, module.configure_optimizers(), batches)
    times = time_interleaved(built, steps, warmup)
    cells = t.sets_per_batch * t.cell_set_len
    for arm in arms:
        config, measured = configs[arm], times[arm]
        wall, cpu = statistics.median(measured["wall"]), statistics.median(measured["cpu"])
        results[arm] = {
            "H": config.model.hidden_dim,
            "layers": config.model.n_layers,
            "heads": config.model.n_heads,
            "K": config.retrieval.top_k,
            "timed_steps": len(measured["wall"]),
            "s_per_step": wall,
            "s_per_step_min": min(measured["wall"]),
            "cpu_s_per_step": cpu,
            "cells_per_s": cells / wall,
            "collate_s_per_step": statistics.median(measured["collate"]),
        }
        print(f"  {shape:<9} {arm:<12} {wall:8.4f} s/step (CPU {cpu:.4f} s)  {cells / wall:9.0f} cells/s")
    for arm in arms:
        if arm != "st" and "st" in results:
            results[f"{arm}_over_st"] = results[arm]["s_per_step"] / results["st"]["s_per_step"]
            results[f"{arm}_over_st_cpu"] = results[arm]["cpu_s_per_step"] / results["st"]["cpu_s_per_step"]
    if "ptrag" in arms:
        module, _, batches = built["ptrag"]
        results["ptrag"].update(retrieval_breakdown(module, batches[0], repeats=max(10, steps)))
        results["ptrag"]["self_exclusion"] = self_exclusion_ratio(
            module, prepared["ptrag"], batches[0], t.cell_set_len, 20
        )
    return results


def print_table(report: dict[str, Any]) -> None:
    print(f"\nthreads={report['machine']['torch_threads']}  load average={report['machine']['load_average']}")
    header = f"{'shape':<10}{'arm':<13}{'s/step':>10}{'CPU s':>10}{'cells/s':>10}{'collate s':>11}"
    print(header + "\n" + "-" * len(header))
    for shape, result in report["shapes"].items():
        for arm in ARMS:
            if arm in result:
                r = result[arm]
                print(
                    f"{shape:<10}{arm:<13}{r['s_per_step']:>10.4f}{r['cpu_s_per_step']:>10.4f}"
                    f"{r['cells_per_s']:>10.0f}"
                    f"{r['collate_s_per_step']:>11.4f}"
                )
        for arm in ARMS:
            if f"{arm}_over_st" in result:
                print(
                    f"{shape:<10}{arm} step / ST step = {result[f'{arm}_over_st']:.2f} (wall), "
                    f"{result[f'{arm}_over_st_cpu']:.2f} (CPU time)"
                )
        if "ptrag" in result and "selector_fwd_bwd_s" in result["ptrag"]:
            p = result["ptrag"]
            print(
                f"{shape:<10}stage 1 lookup {p['retriever_lookup_s'] * 1e3:.3f} ms, candidate encoding "
                f"{p['candidate_encoding_fwd_bwd_s'] * 1e3:.2f} ms, stage 2 selector fwd+bwd "
                f"{p['selector_fwd_bwd_s'] * 1e3:.2f} ms (concat formulation "
                f"{p['selector_concat_fwd_bwd_s'] * 1e3:.2f} ms, max rel diff "
                f"{p['selector_max_rel_diff_vs_concat']:.1e})"
            )
            x = p["self_exclusion"]
            print(
                f"{shape:<10}self-exclusion: authors' per-cell loop {x['authors_loop_s'] * 1e3:.2f} ms vs "
                f"our gather {x['ours_gather_s'] * 1e3:.4f} ms  ({x['ratio']:.0f}x)"
            )
    arc = report.get("arc_state")
    if arc:
        for shape, row in arc.items():
            print(f"{shape:<10}Arc STATE (from {row['file']}): {row['cells_per_s']:.0f} cells/s; "
                  f"ptrag ST / Arc = {row['st_over_arc']:.2f}")  # fmt: skip


def compare_with_arc(report: dict[str, Any]) -> dict[str, Any]:
    """Put Arc STATE's cells/s (from the arc_state benchmark's JSON, when present) beside ST's."""
    found = {}
    for shape, result in report["shapes"].items():
        path = RESULTS / f"arc_state_{shape}.json"
        if not path.is_file() or "st" not in result:
            continue
        arc = json.loads(path.read_text())
        arc_rate = arc.get("cells_per_s_from_median") or arc.get("cells_per_s")
        found[shape] = {
            "file": str(path.relative_to(RESULTS.parent.parent)),
            "cells_per_s": arc_rate,
            "load_average_before": arc.get("load_average_before"),
            "st_over_arc": result["st"]["cells_per_s"] / arc_rate,
        }
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, help="screen folder (data.h5ad + split.toml) or .h5ad")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="where to simulate the screen")
    parser.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=ARMS)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument("--steps", type=int, default=30, help="timed steps at cpu-small")
    parser.add_argument("--paper-steps", type=int, default=8, help="timed steps at the paper shape")
    parser.add_argument("--warmup", type=int, default=3, help="untimed leading steps")
    parser.add_argument("--out", type=Path, default=RESULTS / "training.json")
    args = parser.parse_args(argv)
    set_threads(args.threads)
    data = ensure_screen(args.data, args.cache)
    report: dict[str, Any] = {
        "benchmark": "training",
        "data": str(data),
        "machine": machine_info(args.threads),
    }
    report["shapes"] = {}
    for shape in args.shapes:
        steps = args.steps if shape == "cpu-small" else args.paper_steps
        warmup = args.warmup if shape == "cpu-small" else 1
        report["shapes"][shape] = bench_shape(shape, args.arms, data, args.threads, steps, warmup)
    report["machine"]["load_average_after"] = list(os.getloadavg())
    report["arc_state"] = compare_with_arc(report)
    print_table(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
