"""Peak memory and wall time of loading a screen and sampling one epoch of cell sets.

Usage::

    python benchmarks/bench_memory.py DATA.h5ad [--set-len 64 --sets-per-batch 64 --storage auto]
    # or make a synthetic Replogle-schema file first (written in chunks, in a child process):
    python benchmarks/bench_memory.py /tmp/synthetic.h5ad --make-synthetic 1000000 --genes 2000

Prints a table and writes ``benchmarks/results/memory_<file stem>.json``. Peak RSS is the process's
high-water mark (``resource.getrusage``), so generation runs in a separate process and never counts.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil

RESULTS = Path(__file__).resolve().parent / "results"
CELL_LINES = ("hepg2", "jurkat", "k562", "rpe1")


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9  # ru_maxrss is KiB on Linux


def rss_gb() -> float:
    return psutil.Process().memory_info().rss / 1e9


def make_synthetic(path: Path, n_cells: int, n_genes: int, density: float, sparse: bool, seed: int) -> None:
    """Write a Replogle-schema .h5ad (obs gene/cell_line/gem_group, obsm X_hvg) chunk by chunk."""
    import h5py
    import pandas as pd
    from anndata.io import write_elem

    rng = np.random.default_rng(seed)
    n_perts = max(2, n_cells // 150)
    pert_names = np.array(["non-targeting"] + [f"P{i}" for i in range(n_perts)])
    # 10% controls; perturbation sizes vary as in real screens.
    weights = np.concatenate([[0.1 * n_perts], rng.gamma(2.0, 0.5, n_perts)])
    codes = rng.choice(pert_names.size, size=n_cells, p=weights / weights.sum())
    obs = pd.DataFrame(
        {
            "gene": pd.Categorical.from_codes(codes, pert_names),
            "cell_line": pd.Categorical.from_codes(rng.integers(0, 4, n_cells), CELL_LINES),
            "gem_group": pd.Categorical.from_codes(
                rng.integers(0, 12, n_cells), [str(g) for g in range(1, 13)]
            ),
        },
        index=pd.Index([f"cell{i}" for i in range(n_cells)]),
    )
    var = pd.DataFrame(
        {"highly_variable": np.ones(n_genes, dtype=bool)}, index=[f"GENE{j}" for j in range(n_genes)]
    )
    with h5py.File(path, "w") as handle:
        handle.attrs["encoding-type"], handle.attrs["encoding-version"] = "anndata", "0.1.0"
        write_elem(handle, "obs", obs)
        write_elem(handle, "var", var)
        write_elem(handle, "uns", {})
        obsm = handle.create_group("obsm")
        obsm.attrs["encoding-type"], obsm.attrs["encoding-version"] = "dict", "0.1.0"
        step = 8192
        if sparse:
            group = obsm.create_group("X_hvg")
            group.attrs["encoding-type"], group.attrs["encoding-version"] = "csr_matrix", "0.1.0"
            group.attrs["shape"] = (n_cells, n_genes)
            data = group.create_dataset("data", (0,), dtype=np.float32, maxshape=(None,), chunks=(1 << 20,))
            indices = group.create_dataset(
                "indices", (0,), dtype=np.int32, maxshape=(None,), chunks=(1 << 20,)
            )
            indptr = np.zeros(n_cells + 1, dtype=np.int64)
        else:
            dense = obsm.create_dataset("X_hvg", (n_cells, n_genes), dtype=np.float32, chunks=(512, n_genes))
            dense.attrs["encoding-type"], dense.attrs["encoding-version"] = "array", "0.2.0"
        for start in range(0, n_cells, step):
            stop = min(n_cells, start + step)
            block = rng.random((stop - start, n_genes), dtype=np.float32)
            block = np.where(block < density, np.log1p(block * 40), 0).astype(np.float32)
            if not sparse:
                dense[start:stop] = block
                continue
            rows, cols = np.nonzero(block)
            old = data.shape[0]
            data.resize((old + rows.size,))
            indices.resize((old + rows.size,))
            data[old:], indices[old:] = block[rows, cols], cols.astype(np.int32)
            indptr[start + 1 : stop + 1] = old + np.cumsum(np.bincount(rows, minlength=stop - start))
        if sparse:
            group.create_dataset("indptr", data=indptr)
        for name in ("layers", "obsp", "varm", "varp"):
            empty = handle.create_group(name)
            empty.attrs["encoding-type"], empty.attrs["encoding-version"] = "dict", "0.1.0"


def benchmark(path: Path, set_len: int, sets_per_batch: int, storage: str, seed: int) -> dict[str, object]:
    from ptrag.config import DataConfig
    from ptrag.data.loading import load_dataset
    from ptrag.data.sets import SetSampler, collate

    results: dict[str, object] = {"file": str(path), "file_gb": path.stat().st_size / 1e9}
    results["rss_start_gb"] = rss_gb()
    start = time.perf_counter()
    dataset = load_dataset(path, DataConfig(storage=storage), set_len=set_len)  # type: ignore[arg-type]
    results["load_s"] = time.perf_counter() - start
    results["peak_rss_after_load_gb"] = peak_rss_gb()
    results["rss_after_load_gb"] = rss_gb()
    results.update(
        cells=dataset.n_cells,
        genes=dataset.n_genes,
        storage=dataset.expression_source,
        expression_gb=dataset.expression.nbytes / 1e9,
    )

    start = time.perf_counter()
    groups = [(c, p) for c in dataset.cell_types for p in dataset.perturbations(c)]
    sampler = SetSampler(dataset, groups, set_len=set_len, seed=seed)
    results["sampler_build_s"] = time.perf_counter() - start

    # One epoch: as many sets as it takes to show each perturbed cell once on average.
    n_perturbed = int((~dataset.is_control).sum())
    n_sets = max(1, n_perturbed // set_len)
    n_batches = -(-n_sets // sets_per_batch)
    rng = np.random.default_rng(seed)
    sample_s = collate_s = 0.0
    for _ in range(n_batches):
        t0 = time.perf_counter()
        sets = sampler.sample(sets_per_batch, rng)
        t1 = time.perf_counter()
        batch = collate(sets, dataset)
        collate_s += time.perf_counter() - t1
        sample_s += t1 - t0
        del batch
    results.update(
        epoch_sets=n_batches * sets_per_batch,
        epoch_batches=n_batches,
        epoch_sample_s=sample_s,
        epoch_collate_s=collate_s,
        epoch_cells_per_s=2 * n_batches * sets_per_batch * set_len / max(1e-9, sample_s + collate_s),
    )
    start = time.perf_counter()
    fixed = sampler.fixed_sets()
    results["fixed_sets"] = len(fixed)
    results["fixed_sets_s"] = time.perf_counter() - start
    results["peak_rss_gb"] = peak_rss_gb()
    results.update(
        set_len=set_len, sets_per_batch=sets_per_batch, cpu=platform.processor() or platform.machine()
    )
    results["cpus"] = psutil.cpu_count()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("data", type=Path, help="The .h5ad to load (written first with --make-synthetic).")
    parser.add_argument("--make-synthetic", type=int, metavar="N_CELLS", help="Write a synthetic file first.")
    parser.add_argument("--genes", type=int, default=2000, help="Genes of the synthetic file (default 2000).")
    parser.add_argument("--density", type=float, default=0.5, help="Non-zero fraction of the synthetic file.")
    parser.add_argument("--sparse", action="store_true", help="Write the synthetic X_hvg as CSR.")
    parser.add_argument("--set-len", type=int, default=64, help="Cells per set S (default 64).")
    parser.add_argument("--sets-per-batch", type=int, default=64, help="Sets per batch B (default 64).")
    parser.add_argument(
        "--storage", default="auto", help="DataConfig.storage: auto, float16, float32, sparse."
    )
    parser.add_argument("--seed", type=int, default=0, help="Seed (default 0).")
    parser.add_argument(
        "--out", type=Path, help="JSON output (default benchmarks/results/memory_<stem>.json)."
    )
    parser.add_argument("--generate-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.make_synthetic:
        start = time.perf_counter()
        if args.generate_only:
            make_synthetic(args.data, args.make_synthetic, args.genes, args.density, args.sparse, args.seed)
            print(
                f"wrote {args.data} in {time.perf_counter() - start:.1f} s, peak RSS {peak_rss_gb():.2f} GB"
            )
            return 0
        child = [sys.executable, __file__, str(args.data), "--make-synthetic", str(args.make_synthetic)]
        child += ["--genes", str(args.genes), "--density", str(args.density), "--seed", str(args.seed)]
        child += ["--generate-only"] + (["--sparse"] if args.sparse else [])
        subprocess.run(child, check=True)

    results = benchmark(args.data, args.set_len, args.sets_per_batch, args.storage, args.seed)
    width = max(len(k) for k in results)
    for key, value in results.items():
        shown = f"{value:.3f}" if isinstance(value, float) else str(value)
        print(f"{key.ljust(width)}  {shown}")
    from ptrag.io import atomic_write_text

    out = args.out or RESULTS / f"memory_{args.data.stem}.json"
    atomic_write_text(out, json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
