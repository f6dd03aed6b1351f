"""Training speed of every arm: s/step and cells/s, the cost of retrieval, and self-exclusion.

Usage::

    python benchmarks/bench_training.py                      # cpu-small + paper shape, 2 threads
    python benchmarks/bench_training.py --shapes cpu-small --arms st ptrag --steps 30
    python benchmarks/bench_training.py --data DIR_OR_H5AD --threads 4

The screen is the simulated ``replogle-like`` benchmark (2,000 genes), written once into
``--cache`` when absent. Each timed step is a full optimiser step on a real collated batch: forward,
energy loss (+ sparsity), backward, gradient clipping and Adam, exactly the work of the Lightning
training step (without Lightning's logging). Warm-up steps are excluded and the median is reported.
Prints a table and writes ``benchmarks/results/training.json``.
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
from collections.abc import Callable
from pathlib import Path
from typing import Any

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


def median_time(function: Callable[[], object], repeats: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        function()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


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
    steps = TrainingSteps(sampler, SetTensorizer(dataset, prepared.spec), t.sets_per_batch, t.seed, 0, n)
    batches, times = [], []
    for step in range(n):
        started = time.perf_counter()
        batches.append(steps[step])
        times.append(time.perf_counter() - started)
    return batches, statistics.median(times)


def time_training(module: Any, batches: list[Any], warmup: int) -> list[float]:
    """Seconds per full optimiser step, warm-up excluded."""
    import torch

    optimiser = module.configure_optimizers()
    clip = module.config.train.grad_clip
    module.train()
    times = []
    for index, batch in enumerate(batches):
        started = time.perf_counter()
        optimiser.zero_grad(set_to_none=True)
        distribution, sparsity, _ = module.losses(batch)
        (distribution + sparsity).backward()
        if clip > 0:
            torch.nn.utils.clip_grad_norm_(module.parameters(), clip)
        optimiser.step()
        if index >= warmup:
            times.append(time.perf_counter() - started)
    return times


def concat_selector(selector: Any, tokens: Any, basal: Any, query: Any, candidates: Any, valid: Any) -> Any:
    """The selector as first written (before optimisation): concat (B,S,K,3H), LayerNorm, two MLPs.

    Kept here only as the "before" of the before/after timing and as a numerical check of the
    factorised formulation in ``ptrag.models.selection``; same weights, same Gumbel draws.
    """
    import torch

    b, s, h = basal.shape
    k = candidates.shape[1]
    pair = torch.cat(
        [
            basal[:, :, None, :].expand(b, s, k, h),
            query[:, None, None, :].expand(b, s, k, h),
            candidates[:, None, :, :].expand(b, s, k, h),
        ],
        dim=-1,
    )
    r = selector.norm(pair)
    logits = selector.scorer(r)
    weights = selector.select(logits) * valid[:, None, :].to(logits.dtype)
    context = (weights[..., None] * selector.context(r)).sum(dim=2)
    kept = weights.sum(dim=2, keepdim=True).clamp_min(1.0)
    new_tokens = context if selector.combine == "replace_sum" else tokens + context / kept
    return new_tokens, weights


def retrieval_breakdown(module: Any, batch: dict[str, Any], repeats: int) -> dict[str, float]:
    """Seconds per step spent in stage 1 (table gather) and stage 2 (selector forward + backward)."""
    import torch

    model = module.model
    pert, cell_type = batch["pert_index"], batch["cell_type_index"]
    lookup = median_time(lambda: model.retriever(pert, cell_type), repeats)
    with torch.no_grad():
        basal, query, tokens = model.generator.encode(batch["control"], pert, batch["batch_codes"])
        candidates = model.retriever(pert, cell_type)
        encoded = model.encode_candidates(candidates)
    inputs = [x.detach().requires_grad_(True) for x in (tokens, basal, query, encoded)]

    def selector_step() -> None:
        new_tokens, selection = model.selector(*inputs, candidates.valid)
        (new_tokens.sum() + selection.weights.sum()).backward()

    def concat_step() -> None:
        new_tokens, weights = concat_selector(model.selector, *inputs, candidates.valid)
        (new_tokens.sum() + weights.sum()).backward()

    torch.manual_seed(0)
    ours, _ = model.selector(*inputs, candidates.valid)
    torch.manual_seed(0)
    theirs, _ = concat_selector(model.selector, *inputs, candidates.valid)
    scale = float(theirs.detach().abs().max())

    def encode_step() -> None:
        model.encode_candidates(model.retriever(pert, cell_type)).sum().backward()

    return {
        "retriever_lookup_s": lookup,
        "candidate_encoding_fwd_bwd_s": median_time(encode_step, repeats),
        "selector_fwd_bwd_s": median_time(selector_step, repeats),
        "selector_concat_fwd_bwd_s": median_time(concat_step, max(3, repeats // 2)),
        "selector_max_rel_diff_vs_concat": float((ours - theirs).detach().abs().max()) / max(scale, 1e-12),
    }


def authors_self_exclusion(
    names: list[str], database_names: list[str], embeddings: dict[str, Any], database: Any, k: int, s: int
) -> Any:
    """The authors' approach (difra100/PT-RAG_ICLR): a Python loop over all B·S cells of a step.

    Names are a flat list of length B·S indexed with ``batch_idx // S``; each cell looks its
    perturbation up, computes cosine similarities to the whole database, removes itself and
    takes the top K. Reimplemented here only to time it; the bug it carries is not reproduced.
    """
    import torch

    normed = torch.nn.functional.normalize(database, dim=1)
    position = {name: i for i, name in enumerate(database_names)}
    flat = [name for name in names for _ in range(s)]
    rows = []
    for batch_idx in range(len(flat)):
        name = flat[batch_idx]  # each cell looks up its own perturbation name
        query = torch.nn.functional.normalize(embeddings[name][None, :], dim=1)
        similarity = (normed @ query.T).squeeze(1)
        if name in position:
            similarity[position[name]] = float("-inf")
        rows.append(similarity.topk(k).indices)
    return torch.stack(rows)


def self_exclusion_ratio(module: Any, prepared: Any, batch: dict[str, Any], s: int, repeats: int) -> dict:
    import torch

    spec = prepared.spec
    vocabulary = list(spec.vocabulary)
    names = [vocabulary[i] for i in batch["pert_index"].tolist()]
    embeddings = {n: torch.from_numpy(spec.vocabulary_embeddings[vocabulary.index(n)]) for n in set(names)}
    database = torch.from_numpy(spec.database.embeddings)
    database_names = list(spec.database.perturbations)
    k = module.config.retrieval.top_k
    retriever = module.model.retriever
    theirs = median_time(
        lambda: authors_self_exclusion(names, database_names, embeddings, database, k, s),
        max(3, repeats // 4),
    )
    ours = median_time(lambda: retriever(batch["pert_index"], batch["cell_type_index"]), repeats)
    return {"authors_loop_s": theirs, "ours_gather_s": ours, "ratio": theirs / ours}


def bench_shape(shape: str, arms: list[str], data: Path, threads: int, steps: int, warmup: int) -> dict:
    import torch

    from ptrag.training.module import PerturbationLightningModule
    from ptrag.training.prepare import prepare

    first = make_config(shape, arms[0], threads)
    t = first.train
    dataset, split = load_screen(data, t.cell_set_len)
    results: dict[str, Any] = {"shape": shape, "B": t.sets_per_batch, "S": t.cell_set_len}
    for arm in arms:
        config = make_config(shape, arm, threads)
        torch.manual_seed(config.train.seed)
        prepared = prepare(dataset, split, config)
        module = PerturbationLightningModule(config, prepared.spec)
        batches, collate_s = training_batches(dataset, prepared, config, steps + warmup)
        times = time_training(module, batches, warmup)
        median = statistics.median(times)
        cells = t.sets_per_batch * t.cell_set_len
        row: dict[str, Any] = {
            "H": config.model.hidden_dim,
            "layers": config.model.n_layers,
            "heads": config.model.n_heads,
            "K": config.retrieval.top_k,
            "timed_steps": len(times),
            "s_per_step": median,
            "s_per_step_min": min(times),
            "cells_per_s": cells / median,
            "collate_s_per_step": collate_s,
        }
        if arm == "ptrag":
            row.update(retrieval_breakdown(module, batches[0], repeats=max(10, steps)))
            row["self_exclusion"] = self_exclusion_ratio(module, prepared, batches[0], t.cell_set_len, 20)
        results[arm] = row
        print(f"  {shape:<9} {arm:<12} {median:8.4f} s/step  {cells / median:9.0f} cells/s", flush=True)
    if "st" in results and "ptrag" in results:
        results["ptrag_over_st"] = results["ptrag"]["s_per_step"] / results["st"]["s_per_step"]
    return results


def print_table(report: dict[str, Any]) -> None:
    print(f"\nthreads={report['machine']['torch_threads']}  load average={report['machine']['load_average']}")
    header = f"{'shape':<10}{'arm':<13}{'s/step':>10}{'cells/s':>10}{'collate s':>11}"
    print(header + "\n" + "-" * len(header))
    for shape, result in report["shapes"].items():
        for arm in ARMS:
            if arm in result:
                r = result[arm]
                print(
                    f"{shape:<10}{arm:<13}{r['s_per_step']:>10.4f}{r['cells_per_s']:>10.0f}"
                    f"{r['collate_s_per_step']:>11.4f}"
                )
        if "ptrag_over_st" in result:
            p = result["ptrag"]
            print(f"{shape:<10}PT-RAG step / ST step = {result['ptrag_over_st']:.2f}")
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
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    parser.add_argument("--steps", type=int, default=30, help="timed steps at cpu-small")
    parser.add_argument("--paper-steps", type=int, default=4, help="timed steps at the paper shape")
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
