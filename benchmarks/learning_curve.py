"""Learning curves: validation and test metrics against training steps, per arm, for choosing presets.

Usage::

    python benchmarks/learning_curve.py --data DIR --arms st memory --steps 100 200 400 800 1200

DIR holds data.h5ad and split.toml (e.g. ``ptrag simulate --preset tiny --out DIR``). Each arm trains
once, without early stopping; the run is extended to each step budget in turn (``--resume`` with more
steps continues bit-identically, so the points lie on one training trajectory), and the last
checkpoint is scored on the split's val and test groups: gene-space energy distance and
pearson_delta (against the cell type's control-pool mean), means over groups, as
``ptrag.evaluation`` computes them. Prints a table and writes
``benchmarks/results/learning_curve_<name>.json``.
The preset's early stopping picks its step from the validation column alone.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


def score(prediction, dataset, groups) -> dict[str, float]:
    from ptrag.evaluation.distributional import energy_distances

    pred = prediction.adata_pred
    pool = dataset.control_means
    target = pred.obs["target_gene"].astype(str).to_numpy()
    types = pred.obs["cell_type"].astype(str).to_numpy()
    energy, pearson = [], []
    for cell_type, perturbation in groups:
        predicted = np.asarray(pred.X[(target == perturbation) & (types == cell_type)], dtype=np.float64)
        real = dataset.expression.rows(dataset.conditions.cells((cell_type, perturbation))).astype(np.float64)
        energy.append(energy_distances(predicted, real)[0])
        pearson.append(np.corrcoef(predicted.mean(0) - pool[cell_type], real.mean(0) - pool[cell_type])[0, 1])
    return {"energy_gene": float(np.mean(energy)), "pearson_delta": float(np.nanmean(pearson))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="directory with data.h5ad and split.toml")
    parser.add_argument("--arms", nargs="+", default=["st", "memory"])
    parser.add_argument("--steps", nargs="+", type=int, default=[100, 200, 400, 800, 1200])
    parser.add_argument("--config", default="cpu-small")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--work", type=Path, default=Path("/tmp/ptrag-learning-curve"))
    parser.add_argument("--name", default=None, help="results name (default: the data directory's name)")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], help="config override, e.g. train.lr=3e-4"
    )
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from ptrag.config import load_config
    from ptrag.data.loading import load_dataset
    from ptrag.data.splits import Split
    from ptrag.prediction.predict import predict_sets
    from ptrag.run.checkpoint import Checkpoint
    from ptrag.training.run import train

    base = load_config(args.config)
    dataset = load_dataset(args.data / "data.h5ad", base.data, set_len=base.train.cell_set_len)
    split = Split.read(args.data / "split.toml")
    roles = {role: split.groups(dataset, role) for role in ("val", "test")}
    rows = []
    for arm in args.arms:
        run_dir = args.work / arm
        for index, steps in enumerate(sorted(args.steps)):
            settings = [f"model.arm={arm}", *args.overrides, "train.patience=0", f"train.max_steps={steps}"]
            config = load_config(args.config, settings)
            started = time.perf_counter()
            train(config, dataset, split, run_dir, resume=index > 0, overwrite=index == 0, progress=False)
            checkpoint = Checkpoint.load(run_dir, "last")
            row = {"arm": arm, "steps": steps, "train_seconds": round(time.perf_counter() - started, 1)}
            for role, groups in roles.items():
                prediction = predict_sets(checkpoint, dataset, groups, role=role, progress=False)
                row |= {f"{role}_{k}": v for k, v in score(prediction, dataset, groups).items()}
            rows.append(row)
            print(json.dumps(row), flush=True)
    name = args.name or args.data.name
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"learning_curve_{name}.json"
    summary = {"data": str(args.data), "config": args.config, "overrides": args.overrides, "rows": rows}
    out.write_text(json.dumps(summary, indent=1))
    print("\n| arm | steps | val energy_gene | val pearson_delta | test energy_gene | test pearson_delta |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['arm']} | {r['steps']} | {r['val_energy_gene']:.4f} | {r['val_pearson_delta']:.4f} "
            f"| {r['test_energy_gene']:.4f} | {r['test_pearson_delta']:.4f} |"
        )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
