"""Train Arc's STATE ST model (PyPI ``arc-state``) on CPU at a size matched to ptrag's ST and time it.

The script creates (or reuses) its own virtual environment with ``arc-state`` and ``torch==2.13.0``,
writes cell-load's TOML split file, launches Arc's ``state tx train`` CLI with Hydra overrides in
that environment (through ``arc_runner.py``, which only adds a timing callback), and reports
training s/step and cells/s. It uses only the standard library, so it runs from any Python 3.11
or 3.12 interpreter; ptrag does not need to be installed.

Example (cpu-small shape):
    python benchmarks/arc_state/bench_arc_state.py --data replogle.h5ad --steps 40 \\
        --hidden-dim 64 --n-layers 2 --n-heads 4 --ff-mult 2 --cell-set-len 32 \\
        --sets-per-batch 8 --threads 2 --out benchmarks/results/arc_state_cpu-small.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent.parent
TORCH_PIN = "torch==2.13.0"
DEFAULT_ARC_STATE = "arc-state==0.11.1"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data",
        required=True,
        type=Path,
        help="h5ad in the Replogle-Nadig schema (obsm['X_hvg']), or a folder holding data.h5ad.",
    )
    parser.add_argument("--steps", type=int, default=40, help="Training steps to run (warm-up included).")
    parser.add_argument("--warmup-steps", type=int, default=5, help="Leading steps excluded from timing.")
    parser.add_argument(
        "--hidden-dim", type=int, default=64, help="Hidden size H of encoders and transformer."
    )
    parser.add_argument("--n-layers", type=int, default=2, help="Transformer layers L.")
    parser.add_argument("--n-heads", type=int, default=4, help="Attention heads (head_dim = H / heads).")
    parser.add_argument("--ff-mult", type=int, default=4, help="Transformer MLP width = ff_mult * H.")
    parser.add_argument("--cell-set-len", type=int, default=32, help="Cells per set S (Arc: cell_set_len).")
    parser.add_argument(
        "--sets-per-batch", type=int, default=8, help="Sets per step B (Arc: training.batch_size)."
    )
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads and OMP/MKL threads.")
    parser.add_argument("--lr", type=float, default=3e-4, help="Adam learning rate (does not affect speed).")
    parser.add_argument("--num-workers", type=int, default=0, help="DataLoader workers for Arc's cell-load.")
    parser.add_argument("--pert-col", default="gene", help="obs column with the perturbation target.")
    parser.add_argument("--cell-type-col", default="cell_line", help="obs column with the cell type.")
    parser.add_argument("--batch-col", default="gem_group", help="obs column with the batch.")
    parser.add_argument("--control", default="non-targeting", help="Control label in --pert-col.")
    parser.add_argument(
        "--venv", type=Path, default=REPO_ROOT / ".venv-arc-state", help="Arc STATE venv dir."
    )
    parser.add_argument("--arc-state", default=DEFAULT_ARC_STATE, help="pip requirement for arc-state.")
    parser.add_argument(
        "--torch-index-url",
        default=None,
        help="Extra index for the CPU torch wheel, e.g. https://download.pytorch.org/whl/cpu "
        "(without it, a plain PyPI install of torch on Linux pulls the CUDA build).",
    )
    parser.add_argument("--timeout", type=int, default=900, help="Seconds before the Arc run is killed.")
    parser.add_argument("--out", type=Path, required=True, help="JSON result file to write.")
    return parser.parse_args(argv)


# --------------------------------------------------------------------------- virtual environment


def _venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _installed_versions(python: Path) -> dict[str, str] | None:
    probe = (
        "import importlib.metadata as m, json\n"
        "out = {}\n"
        "for name in ('arc-state', 'torch', 'cell-load'):\n"
        "    try: out[name] = m.version(name)\n"
        "    except m.PackageNotFoundError: pass\n"
        "print(json.dumps(out))\n"
    )
    try:
        done = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def _venv_is_ready(versions: dict[str, str] | None, arc_requirement: str) -> bool:
    if not versions or "arc-state" not in versions or "cell-load" not in versions:
        return False
    if not versions.get("torch", "").startswith("2.13.0"):
        return False
    wanted = arc_requirement.partition("==")[2]
    return not wanted or versions["arc-state"] == wanted


def ensure_venv(venv: Path, arc_requirement: str, torch_index_url: str | None) -> dict[str, str]:
    """Create or reuse the venv; torch is installed first and pinned so pip never swaps it."""
    python = _venv_python(venv)
    versions = _installed_versions(python) if python.exists() else None
    if _venv_is_ready(versions, arc_requirement):
        print(f"[arc-state] reusing {venv} ({versions})", flush=True)
        return versions or {}
    if sys.version_info[:2] not in ((3, 11), (3, 12)):
        found = platform.python_version()
        raise SystemExit(f"arc-state needs Python 3.11 or 3.12 for its venv; this is {found}")
    if not python.exists():
        print(f"[arc-state] creating venv {venv}", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(python), "-m", "pip", "install", "--disable-pip-version-check"]
    index = ["--extra-index-url", torch_index_url] if torch_index_url else []
    print(f"[arc-state] installing {TORCH_PIN} then {arc_requirement} (a few minutes)", flush=True)
    subprocess.run([*pip, *index, TORCH_PIN], check=True)
    subprocess.run([*pip, *index, "-c", str(HERE / "constraints.txt"), arc_requirement], check=True)
    versions = _installed_versions(python)
    if not _venv_is_ready(versions, arc_requirement):
        raise SystemExit(f"[arc-state] venv {venv} is not usable after install: {versions}")
    return versions or {}


# --------------------------------------------------------------------------- Arc configuration


def hydra_overrides(args: argparse.Namespace, toml_path: Path, output_dir: Path) -> list[str]:
    """Overrides for ``state tx train`` that give Arc's ST the same shape as ptrag's ST.

    Matched: hidden size H, L bidirectional transformer layers without positional encoding,
    heads, MLP width ff_mult*H, 2-layer MLP encoders for basal cells and perturbation, a batch
    embedding, one linear output head on (transformer output + basal encoding), energy loss in
    the 2,000-HVG log1p space, B sets of S cells per step, Adam with gradient clip 10, no dropout.
    """
    if args.hidden_dim % args.n_heads:
        raise SystemExit(f"--hidden-dim {args.hidden_dim} is not divisible by --n-heads {args.n_heads}")
    backbone = "model.kwargs.transformer_backbone_kwargs"
    return [
        f"data.kwargs.toml_config_path={toml_path}",
        "data.kwargs.embed_key=X_hvg",
        "data.kwargs.output_space=gene",
        f"data.kwargs.pert_col={args.pert_col}",
        f"data.kwargs.cell_type_key={args.cell_type_col}",
        f"data.kwargs.batch_col={args.batch_col}",
        f"data.kwargs.control_pert={args.control}",
        f"data.kwargs.num_workers={args.num_workers}",
        "model=state_sm",
        f"model.kwargs.cell_set_len={args.cell_set_len}",
        f"model.kwargs.hidden_dim={args.hidden_dim}",
        "model.kwargs.n_encoder_layers=2",
        "model.kwargs.n_decoder_layers=1",
        "model.kwargs.use_basal_projection=true",
        "model.kwargs.batch_encoder=true",
        "++model.kwargs.dropout=0.0",
        f"{backbone}.num_hidden_layers={args.n_layers}",
        f"{backbone}.num_attention_heads={args.n_heads}",
        f"{backbone}.num_key_value_heads={args.n_heads}",
        f"{backbone}.head_dim={args.hidden_dim // args.n_heads}",
        f"{backbone}.intermediate_size={args.ff_mult * args.hidden_dim}",
        f"training.batch_size={args.sets_per_batch}",
        f"training.max_steps={args.steps}",
        f"training.lr={args.lr}",
        "training.gradient_clip_val=10",
        # Validation and checkpoints are pushed past the run so they never land in a timed step.
        f"training.val_freq={args.steps + 100_000}",
        f"training.ckpt_every_n_steps={args.steps + 100_000}",
        "use_wandb=false",
        f"output_dir={output_dir}",
        "name=arc_state_bench",
        "overwrite=true",
    ]


# --------------------------------------------------------------------------- timing summary


def summarise(raw: dict[str, Any], warmup: int) -> dict[str, Any]:
    ends: list[float] = raw["batch_end_times"]
    cells: list[int] = raw["cells_per_step"]
    if warmup < 1 or len(ends) <= warmup + 1:
        raise SystemExit(f"need --warmup-steps >= 1 and more than {warmup + 1} steps; Arc ran {len(ends)}")
    # Step k's wall time is end_k - end_{k-1}: data loading + forward + backward + optimiser + hooks.
    intervals = [b - a for a, b in itertools.pairwise(ends[warmup - 1 :])]
    timed_cells = cells[warmup:]
    total = sum(intervals)
    compute = raw["compute_s"][len(raw["compute_s"]) - len(intervals) :]
    return {
        "timed_steps": len(intervals),
        "s_per_step": total / len(intervals),
        "s_per_step_median": statistics.median(intervals),
        "s_per_step_min": min(intervals),
        "s_per_step_max": max(intervals),
        "compute_s_per_step_median": statistics.median(compute),
        "cells_per_step_mean": sum(timed_cells) / len(timed_cells),
        "cells_per_s": sum(timed_cells) / total,
        "cells_per_s_from_median": (sum(timed_cells) / len(timed_cells)) / statistics.median(intervals),
        "timed_step_s": [round(x, 5) for x in intervals],
        "setup_s_before_first_step": ends[0] - raw["fit_start_time"] if raw.get("fit_start_time") else None,
    }


def print_table(result: dict[str, Any]) -> None:
    size = result["matched_size"]
    rows = [
        ("model", f"Arc STATE ST (arc-state {result['arc_state_version']}, torch {result['torch_version']})"),
        (
            "size",
            f"H={size['hidden_dim']} L={size['n_layers']} heads={size['n_heads']} ff={size['ff_mult']}xH",
        ),
        (
            "batch",
            f"{size['sets_per_batch']} sets x {size['cell_set_len']} cells, threads={result['threads']}",
        ),
        ("params", f"{result['param_count_trainable']:,} trainable / {result['param_count_total']:,} total"),
        ("timed steps", f"{result['timed_steps']} (after {result['warmup_steps']} warm-up)"),
        ("s/step", f"{result['s_per_step']:.4f} mean, {result['s_per_step_median']:.4f} median"),
        (
            "cells/s",
            f"{result['cells_per_s']:.0f} (from median step: {result['cells_per_s_from_median']:.0f})",
        ),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")


def run_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    """Set up the venv, train Arc STATE, and return the result dict (also what the JSON holds).

    Other benchmark scripts can call this with ``parse_args([...])`` to put Arc's numbers next
    to their own in one run.
    """
    data = args.data.resolve()
    if data.is_dir():  # accept a `ptrag simulate --out DIR` folder
        data = data / "data.h5ad"
    if not data.is_file():
        raise SystemExit(f"--data {data} does not exist; pass an .h5ad file or a folder with data.h5ad")
    if args.warmup_steps < 1 or args.steps <= args.warmup_steps + 1:
        raise SystemExit("--warmup-steps must be >= 1 and --steps must exceed --warmup-steps + 1")
    versions = ensure_venv(args.venv.resolve(), args.arc_state, args.torch_index_url)

    with tempfile.TemporaryDirectory(prefix="arc_state_bench_") as tmp_name:
        tmp = Path(tmp_name)
        overrides = hydra_overrides(args, tmp / "split.toml", tmp / "runs")
        spec = {
            "threads": args.threads,
            "result_path": str(tmp / "raw.json"),
            "argv": overrides,
            "split": {
                "data": str(data),
                "cell_type_col": args.cell_type_col,
                "pert_col": args.pert_col,
                "control": args.control,
                "n_val_perts": 2,
                "toml_path": str(tmp / "split.toml"),
            },
        }
        (tmp / "spec.json").write_text(json.dumps(spec))
        env = {**os.environ, "WANDB_MODE": "disabled", "HF_HUB_OFFLINE": "1"}
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            env[var] = str(args.threads)
        command = [
            str(_venv_python(args.venv.resolve())),
            str(HERE / "arc_runner.py"),
            str(tmp / "spec.json"),
        ]
        print(f"[arc-state] state tx train {shlex.join(overrides)}", flush=True)
        load_before = os.getloadavg() if hasattr(os, "getloadavg") else None
        started = time.time()
        log_path = tmp / "arc_train.log"
        try:
            with log_path.open("w") as log:
                done = subprocess.run(
                    command, env=env, stdout=log, stderr=subprocess.STDOUT, timeout=args.timeout
                )
        except subprocess.TimeoutExpired:
            tail = log_path.read_text()[-2000:]
            raise SystemExit(
                f"Arc STATE ran past --timeout {args.timeout}s; last log lines:\n{tail}"
            ) from None
        if done.returncode != 0:
            tail = log_path.read_text()[-4000:]
            raise SystemExit(f"Arc STATE training failed (exit {done.returncode}); last log lines:\n{tail}")
        raw = json.loads((tmp / "raw.json").read_text())
        split_toml = (tmp / "split.toml").read_text()

    timing = summarise(raw, args.warmup_steps)
    cpus = os.cpu_count() or 1
    # Other processes competing for the cores make OpenMP threads spin-wait; such numbers are noise.
    busy = load_before is not None and load_before[0] > 0.5 * cpus
    result: dict[str, Any] = {
        "benchmark": "arc_state_training",
        "arc_state_version": raw["arc_state_version"],
        "cell_load_version": raw["cell_load_version"],
        "torch_version": raw["torch_version"],
        "lightning_version": raw["lightning_version"],
        "python_version": raw["python_version"],
        "venv_versions": versions,
        "device": "cpu",
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "machine_busy": busy,
        "threads": args.threads,
        "torch_threads_in_training": raw["torch_threads_in_training"],
        "matched_size": {
            "hidden_dim": args.hidden_dim,
            "n_layers": args.n_layers,
            "n_heads": args.n_heads,
            "ff_mult": args.ff_mult,
            "cell_set_len": args.cell_set_len,
            "sets_per_batch": args.sets_per_batch,
        },
        "nominal_cells_per_step": args.cell_set_len * args.sets_per_batch,
        "steps": args.steps,
        "warmup_steps": args.warmup_steps,
        **timing,
        "param_count_trainable": raw["param_count_trainable"],
        "param_count_total": raw["param_count_total"],
        "param_count_trainable_by_module": raw["param_count_trainable_by_module"],
        "model_class": raw["model_class"],
        "data": str(data),
        "split_toml": split_toml,
        "arc_command": "state tx train " + shlex.join(overrides),
        "bench_command": shlex.join([Path(sys.executable).name, *sys.argv]),
        "run_started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "arc_wall_s": raw["process_wall_s"],
    }
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = run_benchmark(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = args.out.with_suffix(args.out.suffix + ".tmp")
    tmp_out.write_text(json.dumps(result, indent=2) + "\n")
    tmp_out.replace(args.out)  # atomic, so a half-written result is never read as complete
    print_table(result)
    if result["machine_busy"]:
        load, cpus = result["load_average_before"][0], result["cpu_count"]
        print(f"WARNING: 1-min load average was {load:.1f} on {cpus} CPUs; timings are unreliable")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
