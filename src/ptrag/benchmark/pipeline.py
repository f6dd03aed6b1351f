"""``ptrag benchmark``: simulate (or take) a screen, run every arm, score references, write the report."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from ptrag.benchmark.runner import DEFAULT_ARMS, BenchmarkRuns, run_arms
from ptrag.config import DEFAULT_PRESET, get_arm, load_config
from ptrag.errors import DataError
from ptrag.evaluation.metric_registry import metrics_where
from ptrag.io import atomic_write_text, staged_output

log = logging.getLogger(__name__)

KEYS = ["cell_type", "perturbation"]


def _long_results(runs: BenchmarkRuns) -> pd.DataFrame:
    """Per (method, cell type, perturbation): arms averaged over seeds, references as scored."""
    frames = [r.evaluation.results.assign(method=r.arm, seed=r.seed) for r in runs.arms]
    arms = pd.concat(frames, ignore_index=True)
    metric_columns = [
        c for c in arms.columns if c not in {*KEYS, "method", "seed"} and arms[c].dtype.kind == "f"
    ]
    averaged = arms.groupby(["method", *KEYS], sort=False)[metric_columns].mean().reset_index()
    references = [res.results.assign(method=name) for name, res in runs.references.items()]
    return pd.concat([averaged, *references], ignore_index=True)


def _per_seed(runs: BenchmarkRuns) -> list[dict[str, Any]]:
    rows = []
    for r in runs.arms:
        means = r.evaluation.results.mean(numeric_only=True)
        rows.append(
            {
                "arm": r.arm,
                "seed": r.seed,
                "train_seconds": round(r.train_seconds, 2),
                "predict_seconds": round(r.predict_seconds, 2),
                "final_logged": r.final_metrics,
                "mean_metrics": {k: float(v) for k, v in means.items()},
            }
        )
    return rows


def verdict(summary: dict[str, Any], baseline: str = "st") -> list[str]:
    """Plain sentences: each arm against the baseline on the verdict metrics (paired Wilcoxon)."""
    verdict_metrics = metrics_where("verdict")
    lines = []
    for row in summary.get("paired_tests", []):
        if row["metric"] not in verdict_metrics or row["n_pairs"] == 0:
            continue
        better = row["wins"] > row["losses"]
        p_value = row["p_value"]  # None (JSON null) when every difference is zero
        significant = p_value is not None and p_value < 0.05
        word = ("better than" if better else "worse than") if significant else "not distinguishable from"
        lines.append(
            f"{row['arm']} is {word} {baseline} on {row['metric']}: median difference "
            f"{row['median_difference']:+.4g} (arm − {baseline}), better on {row['wins']} and worse on "
            f"{row['losses']} of {row['n_pairs']} perturbations, Wilcoxon p = "
            + (f"{p_value:.2g}." if p_value is not None else "n/a (no differences).")
        )
    return lines


def run_benchmark(
    out: str | Path,
    data_dir: str | Path | None = None,
    preset: str = "replogle-like",
    arms: Sequence[str] = DEFAULT_ARMS,
    seeds: int = 1,
    config_source: str = DEFAULT_PRESET,
    overrides: Sequence[str] = (),
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Check the arms and their configs, then write the benchmark into a staging directory that
    replaces ``out`` only when everything is done."""
    if "st" not in arms:
        raise DataError("The benchmark compares every arm against 'st'; include it in --arms.")
    for arm in arms:  # every arm and config error surfaces before anything is trained
        load_config(config_source, [*overrides, f"model.arm={get_arm(arm).name}"])
    with staged_output(out, overwrite=overwrite) as staging:
        return _run_benchmark(staging, data_dir, preset, arms, seeds, config_source, overrides, progress)


def _run_benchmark(
    out: Path,
    data_dir: str | Path | None,
    preset: str,
    arms: Sequence[str],
    seeds: int,
    config_source: str,
    overrides: Sequence[str],
    progress: bool,
) -> dict[str, Any]:
    from ptrag.report.render import write_report
    from ptrag.report.summary import build_summary

    started = time.perf_counter()
    if data_dir is None:
        from ptrag.simulation import simulate

        log.info("[benchmark] simulating the %s screen", preset)
        simulated = simulate(preset, seed=0, out_dir=out / "data", progress=progress)
        data_path, split_path = simulated.data_path, simulated.split_path
    else:
        data_path, split_path = Path(data_dir) / "data.h5ad", Path(data_dir) / "split.toml"
        for path in (data_path, split_path):
            if not path.is_file():
                raise DataError(
                    f"--data {data_dir} must hold data.h5ad and split.toml; {path.name} is missing."
                )
    runs = run_arms(data_path, split_path, out, arms, seeds, config_source, overrides, progress)
    results = _long_results(runs)
    results.to_csv(out / "results_all.csv", index=False)
    kinds = {arm: "arm" for arm in arms} | {name: "reference" for name in runs.references}
    ptrag_runs = [r for r in runs.arms if r.arm == "ptrag" and r.seed == 0]
    retrieval = ptrag_runs[0].retrieval if ptrag_runs else None
    queries = None
    if retrieval is not None and not retrieval.empty:
        queries = list(dict.fromkeys(zip(retrieval["cell_type"], retrieval["perturbation"], strict=True)))[:4]
    info = {
        "data": runs.dataset_info,
        "arms": list(arms),
        "seeds": seeds,
        "config": runs.config,
        "per_seed": _per_seed(runs),
        "total_seconds": round(time.perf_counter() - started, 1),
    }
    source = f"simulated {preset}" if data_dir is None else str(data_dir)
    summary = build_summary(
        results,
        kinds,
        baseline="st",
        retrieval=retrieval,
        neighbour_queries=queries,
        info=info,
        title=f"ptrag benchmark: {source} ({', '.join(arms)}; {seeds} seed(s))",
    )
    summary["verdict"] = verdict(summary)
    write_report(summary, out)
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=1, default=str))
    log.info("[benchmark] done in %.0f s → %s", time.perf_counter() - started, out / "report.html")
    return summary
