"""Can a biologist trust a screen's effect sizes? Rank agreement and interval coverage, measured.

    python benchmarks/screen_effects.py BENCH_DIR [--arm memory] [--genome-wide k562]
        [--json benchmarks/results/screen_effects_replogle_like.json]

``BENCH_DIR`` is the output of ``ptrag benchmark`` (``runs/<split>/<arm>-seed<k>`` and
``data/data.h5ad``). For every run of ``--arm``, each of its split's test genes is screened in its
cell type exactly as ``ptrag screen`` would (one shared control draw, one set of cells), with the
90 % effect-size interval calibrated on the run's own validation groups. Against the measured
effect of the held-out group (L2 norm of its mean minus the control mean) it reports, per split:

- ``spearman``: rank correlation of the screen's expected effect (the ranking it uses) and the
  measured effect over the test groups (per cell type, then averaged over cell types and seeds; the
  issue's goal is ≥ 0.5 on unseen genes); ``spearman_model_effect`` the same for the model's own
  effect size before the evidence calibration;
  ``spearman_true`` the same against the simulator's true effect (``truth.parquet``), and
  ``spearman_observed_vs_true`` how far the measured effects themselves rank like the truth, and
  ``spearman_true_cosine_alone`` how the nearest measured neighbour's cosine alone ranks it;
- ``coverage``: the share of test groups whose measured effect lies in the interval (goal 85–95 %;
  ``coverage_true``: of the true effect);
- ``cosine_vs_ratio``: Spearman of the nearest measured neighbour's cosine with log(measured /
  expected); positive means genes far from every measured perturbation are still over-predicted.

``--genome-wide CELL_TYPE`` also screens every gene with a prior in that cell type with one run
(unseen split, seed 0) and compares the predicted effects of low-evidence genes (no measured
neighbour) with measured-like ones.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

os.environ.setdefault("OMP_NUM_THREADS", "1")


def true_effects(data: Path) -> dict[tuple[str, str], float] | None:
    """The simulator's true effect of every condition (``truth.parquet`` beside the data), if any."""
    path = data.parent / "truth.parquet"
    if not path.is_file():
        return None
    truth = pd.read_parquet(path)
    genes = truth.columns[2:]
    norms = np.linalg.norm(truth[genes].to_numpy(np.float64), axis=1)
    return dict(zip(zip(truth["cell_line"], truth["perturbation"], strict=True), norms, strict=True))


def screen_test_groups(run_dir: Path, data: Path) -> pd.DataFrame:
    """One row per test group of the run: predicted effect, its interval, the measured effect (noise
    removed) and, on a simulated screen, the true one."""
    import ptrag
    from ptrag.prediction.effect_interval import observed_effects
    from ptrag.prediction.screen import screen_genes
    from ptrag.run.layout import read_run_split

    model = ptrag.Model.load(run_dir)
    dataset = model.load_data(data)
    split = read_run_split(run_dir)
    groups = split.groups(dataset, "test")
    observed = observed_effects(dataset, groups, split.roles(dataset) == "test")
    rows = []
    for cell_type in sorted({c for c, _ in observed}):
        genes = [p for c, p in observed if c == cell_type]
        table = screen_genes(model.checkpoint, dataset, cell_type, genes, progress=False).table
        table["observed"] = [observed[(cell_type, g)] for g in table["perturbation"]]
        truth = true_effects(data)
        if truth is not None:
            table["true"] = [truth[(cell_type, g)] for g in table["perturbation"]]
        rows.append(table)
    return pd.concat(rows, ignore_index=True)


def _spearman_by_cell_type(frame: pd.DataFrame, column: str, predicted: str = "expected_effect") -> float:
    values = [
        stats.spearmanr(part[predicted], part[column]).statistic
        for _, part in frame.groupby(["seed", "cell_type"])
        if len(part) >= 5
    ]
    return float(np.mean(values))


def summarise(frame: pd.DataFrame) -> dict[str, Any]:
    ratio = np.log(frame["observed"] / frame["expected_effect"])
    inside = (frame["effect_low"] <= frame["observed"]) & (frame["observed"] <= frame["effect_high"])
    truth: dict[str, float] = {}
    if "true" in frame:
        covers_truth = (frame["effect_low"] <= frame["true"]) & (frame["true"] <= frame["effect_high"])
        truth = {
            "spearman_true": _spearman_by_cell_type(frame, "true"),
            "spearman_true_model_effect": _spearman_by_cell_type(frame, "true", "effect_size"),
            "spearman_true_cosine_alone": _spearman_by_cell_type(frame, "true", "nearest_cosine"),
            "spearman_observed_vs_true": float(stats.spearmanr(frame["observed"], frame["true"]).statistic),
            "coverage_true": float(covers_truth.mean()),
        }
    return {
        "n_groups": len(frame),
        "spearman": _spearman_by_cell_type(frame, "observed"),
        "spearman_model_effect": _spearman_by_cell_type(frame, "observed", "effect_size"),
        **truth,
        "coverage": float(inside.mean()),
        "interval_over_expected": [
            float(np.median(frame["effect_low"] / frame["expected_effect"])),
            float(np.median(frame["effect_high"] / frame["expected_effect"])),
        ],
        "median_observed_over_expected": float(np.exp(np.median(ratio))),
        "cosine_vs_ratio": float(stats.spearmanr(frame["nearest_cosine"], ratio).statistic),
    }


def genome_wide(run_dir: Path, data: Path, cell_type: str) -> dict[str, Any]:
    import ptrag

    model = ptrag.Model.load(run_dir)
    table = model.screen(data, cell_type, progress=False).table
    unmeasured = np.where(table["low_evidence"], "low_evidence", "measured_like")
    kind = np.where(table["measured_in_training"], "measured", unmeasured)
    kinds = ("measured", "measured_like", "low_evidence")
    effects = {k: table.loc[kind == k, "expected_effect"] for k in kinds}
    model_effects = {k: float(table.loc[kind == k, "effect_size"].median()) for k in kinds}
    less = stats.mannwhitneyu(effects["low_evidence"], effects["measured_like"], alternative="less")
    return {
        "cell_type": cell_type,
        "n_genes": len(table),
        "median_expected_effect": {k: float(v.median()) for k, v in effects.items()},
        "median_model_effect": model_effects,
        "n": {k: len(v) for k, v in effects.items()},
        "low_evidence_smaller_p": float(less.pvalue),
        "cosine_vs_effect_spearman": float(
            stats.spearmanr(table["nearest_cosine"], table["expected_effect"]).statistic
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("bench_dir", type=Path)
    parser.add_argument("--arm", default="memory")
    parser.add_argument("--genome-wide", metavar="CELL_TYPE")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    data = args.bench_dir / "data" / "data.h5ad"
    result: dict[str, Any] = {"bench_dir": str(args.bench_dir), "arm": args.arm, "splits": {}}
    for split_dir in sorted((args.bench_dir / "runs").iterdir()):
        frames = []
        for run_dir in sorted(split_dir.glob(f"{args.arm}-seed*")):
            frame = screen_test_groups(run_dir, data)
            frame.insert(0, "seed", run_dir.name.rsplit("seed", 1)[1])
            frames.append(frame)
        if frames:
            result["splits"][split_dir.name] = summarise(pd.concat(frames, ignore_index=True))
            print(split_dir.name, json.dumps(result["splits"][split_dir.name]))
    if args.genome_wide:
        run_dir = args.bench_dir / "runs" / "unseen" / f"{args.arm}-seed0"
        result["genome_wide"] = genome_wide(run_dir, data, args.genome_wide)
        print("genome-wide", json.dumps(result["genome_wide"]))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
