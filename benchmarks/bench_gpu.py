"""Training speed and memory of every arm at the paper shape on one GPU (or CPU for a dry run).

Runs the real PerturbationLightningModule losses (energy distance + sparsity) with Adam and gradient
clipping on batches of the paper's shape (64 sets × 64 cells × 2,000 genes, H = 128, K = 32). The batch
values are random log1p-like numbers generated on the device: speed and memory do not depend on them,
and the script then needs no data files. Prints a table and writes benchmarks/results/gpu_paper.json.

    python benchmarks/bench_gpu.py --steps 300 [--arms st,ptrag] [--device cuda]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from ptrag.config import load_config
from ptrag.retrieval import ResponseMemory, RetrievalDatabase
from ptrag.run.spec import ModelSpec
from ptrag.training.module import PerturbationLightningModule

N_GENES, EMBED_DIM, VOCABULARY, DATABASE, CELL_TYPES, BATCHES = 2000, 384, 1200, 900, 4, 48


def synthetic_spec(seed: int = 0) -> ModelSpec:
    rng = np.random.default_rng(seed)
    names = tuple(f"P{i}" for i in range(VOCABULARY))
    embeddings = rng.normal(size=(VOCABULARY, EMBED_DIM)).astype(np.float32)
    cell_types = tuple(f"c{i}" for i in range(CELL_TYPES))
    memory = ResponseMemory(
        tuple(p for p in names[:DATABASE] for _ in cell_types),
        tuple(c for _ in names[:DATABASE] for c in cell_types),
        rng.normal(scale=0.1, size=(DATABASE * CELL_TYPES, N_GENES)).astype(np.float32),
    )
    return ModelSpec(
        genes=tuple(f"g{i}" for i in range(N_GENES)),
        vocabulary=names,
        vocabulary_embeddings=embeddings,
        cell_types=cell_types,
        batches=tuple(f"b{i}" for i in range(BATCHES)),
        database=RetrievalDatabase.build(names[:DATABASE], embeddings[:DATABASE]),
        memory=memory,
    )


def batch(config, device: torch.device, generator: torch.Generator) -> dict[str, torch.Tensor]:
    b, s = config.train.sets_per_batch, config.train.cell_set_len
    kw = {"device": device, "generator": generator}
    return {
        "control": torch.rand(b, s, N_GENES, **kw).pow(3) * 4,
        "target": torch.rand(b, s, N_GENES, **kw).pow(3) * 4,
        "pert_index": torch.randint(0, VOCABULARY, (b,), **kw),
        "cell_type_index": torch.randint(0, CELL_TYPES, (b,), **kw),
        "batch_codes": torch.randint(0, BATCHES, (b, s), **kw),
    }


def measure(arm: str, steps: int, warmup: int, device: torch.device, preset: str) -> dict[str, float]:
    config = load_config(preset, [f"model.arm={arm}"])
    torch.manual_seed(0)
    module = PerturbationLightningModule(config, synthetic_spec()).to(device)
    optimizer = torch.optim.Adam(module.parameters(), lr=config.train.lr)
    generator = torch.Generator(device=device).manual_seed(0)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for step in range(warmup + steps):
        data = batch(config, device, generator)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        started = time.perf_counter()
        distribution, sparsity, _ = module.losses(data)
        optimizer.zero_grad(set_to_none=True)
        (distribution + sparsity).backward()
        torch.nn.utils.clip_grad_norm_(module.parameters(), config.train.grad_clip)
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if step >= warmup:
            times.append(time.perf_counter() - started)
    cells = config.train.sets_per_batch * config.train.cell_set_len
    median = float(np.median(times))
    return {
        "arm": arm,
        "steps": steps,
        "s_per_step": median,
        "cells_per_s": cells / median,
        "peak_memory_gib": (torch.cuda.max_memory_allocated(device) / 2**30)
        if device.type == "cuda"
        else None,
        "parameters": sum(p.numel() for p in module.parameters()),
        "final_loss": float(distribution),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--arms", default="st,vanilla_rag,ptrag,memory")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--preset", default="paper")
    parser.add_argument("--out", default="benchmarks/results/gpu_paper.json")
    args = parser.parse_args()
    device = torch.device(args.device)
    rows = [measure(arm, args.steps, args.warmup, device, args.preset) for arm in args.arms.split(",")]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    print(f"device: {name}; torch {torch.__version__}; preset {args.preset}")
    print(f"{'arm':<12}{'s/step':>10}{'cells/s':>12}{'peak GiB':>10}{'params':>10}")
    for r in rows:
        peak = f"{r['peak_memory_gib']:.2f}" if r["peak_memory_gib"] is not None else "-"
        print(
            f"{r['arm']:<12}{r['s_per_step']:>10.4f}{r['cells_per_s']:>12.0f}{peak:>10}{r['parameters']:>10}"
        )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {"device": name, "torch": torch.__version__, "preset": args.preset, "rows": rows}, indent=1
        )
    )


if __name__ == "__main__":
    main()
