"""``ptrag benchmark``: simulate (or take) a screen, run every arm on each of its splits, score the
references per split, compare every arm with ST and with every simple reference, write the report."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from ptrag.benchmark.parallel import available_memory, choose_jobs, run_splits
from ptrag.benchmark.runner import DEFAULT_ARMS, BenchmarkRuns, load_benchmark_dataset
from ptrag.benchmark.splits import BenchmarkSplit, resolve_splits
from ptrag.config import DEFAULT_PRESET, get_arm, load_config
from ptrag.config.arms import BASELINE_ARM
from ptrag.errors import DataError
from ptrag.evaluation import mean_on_controls_name, row_kind
from ptrag.io import staged_output
from ptrag.report.summary import SplitResults
from ptrag.simulation.presets import DEFAULT_SIMULATION

__all__ = ["KEYS", "long_results", "run_benchmark"]

log = logging.getLogger(__name__)

KEYS = ["cell_type", "perturbation"]
BASELINE = BASELINE_ARM


def long_results(runs: BenchmarkRuns) -> pd.DataFrame:
    """Per (method, cell type, perturbation): arms and their ``<arm>_mean_on_controls`` rows averaged
    over seeds, references as scored."""
    frames = [r.evaluation.results.assign(method=r.arm, seed=r.seed) for r in runs.arms] + [
        r.mean_on_controls.results.assign(method=mean_on_controls_name(r.arm), seed=r.seed)
        for r in runs.arms
        if r.mean_on_controls is not None
    ]
    arms = pd.concat(frames, ignore_index=True)
    metric_columns = [
        c for c in arms.columns if c not in {*KEYS, "method", "seed"} and arms[c].dtype.kind == "f"
    ]
    averaged = arms.groupby(["method", *KEYS], sort=False)[metric_columns].mean().reset_index()
    references = [res.results.assign(method=name) for name, res in runs.references.items()]
    return pd.concat([averaged, *references], ignore_index=True)


def _per_arm(runs: BenchmarkRuns, table: str) -> dict[str, pd.DataFrame]:
    """arm → its retrieval records or training logs over every seed (with a ``seed`` column)."""
    out: dict[str, pd.DataFrame] = {}
    for arm in dict.fromkeys(r.arm for r in runs.arms):
        frames = [
            getattr(r, table).assign(seed=r.seed)
            for r in runs.arms
            if r.arm == arm and not getattr(r, table).empty
        ]
        if frames:
            out[arm] = pd.concat(frames, ignore_index=True)
    return out


def _spread(runs: BenchmarkRuns) -> dict[str, dict[str, Any]]:
    """method → its per-gene spread summary (arms and their own-mean rows averaged over seeds)."""
    from ptrag.evaluation.spread import mean_spread, spread_summary

    tables: dict[str, list[pd.DataFrame]] = {}
    for r in runs.arms:
        for name, result in ((r.arm, r.evaluation), (mean_on_controls_name(r.arm), r.mean_on_controls)):
            if result is not None and result.gene_spread is not None:
                tables.setdefault(name, []).append(result.gene_spread)
    for name, result in runs.references.items():
        if result.gene_spread is not None:
            tables[name] = [result.gene_spread]
    return {name: spread_summary(mean_spread(found)) for name, found in tables.items()}


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
                **{f"{name}_seconds": round(value, 2) for name, value in r.phase_seconds.items()},
                "final_logged": r.final_metrics,
                "mean_metrics": {k: float(v) for k, v in means.items()},
            }
        )
    return rows


def run_benchmark(
    out: str | Path,
    data_dir: str | Path | None = None,
    preset: str = DEFAULT_SIMULATION,
    arms: Sequence[str] = DEFAULT_ARMS,
    seeds: int = 1,
    config_source: str = DEFAULT_PRESET,
    overrides: Sequence[str] = (),
    overwrite: bool = False,
    progress: bool = True,
    splits: Sequence[str] | None = None,
    jobs: int = 0,
) -> dict[str, Any]:
    """Check the arms, their configs and the data directory's splits (``splits`` by name; default:
    every split it offers), then write the benchmark into a staging directory that replaces ``out``
    only when everything is done. ``jobs``: processes running splits side by side (0: one per split,
    up to the available cores; 1: one after the other in this process)."""
    from ptrag.report.render import write_report
    from ptrag.report.summary import build_summary

    if BASELINE not in arms:
        raise DataError(f"The benchmark compares every arm against {BASELINE!r}; include it in --arms.")
    for arm in arms:  # every arm and config error surfaces before anything is trained
        load_config(config_source, [*overrides, f"model.arm={get_arm(arm).name}"])
    chosen = resolve_splits(data_dir, splits) if data_dir is not None else []
    with staged_output(out, overwrite=overwrite) as staging:
        started = time.perf_counter()
        phases: dict[str, float] = {}
        if data_dir is None:
            from ptrag.simulation import simulate

            log.info("[benchmark] simulating the %s screen", preset)
            data_dir = simulate(preset, seed=0, out_dir=staging / "data", progress=progress).out_dir
            chosen = resolve_splits(data_dir, splits)
            source, shown_path = f"simulated {preset}", Path(out) / "data" / "data.h5ad"
            phases["simulate"] = time.perf_counter() - started
        else:
            source, shown_path = str(data_dir), Path(data_dir) / "data.h5ad"
        loading = time.perf_counter()
        dataset = load_benchmark_dataset(Path(data_dir) / "data.h5ad", config_source, overrides)
        phases["load"] = time.perf_counter() - loading
        log.info("[benchmark] %s", ", ".join(f"{name} {value:.1f} s" for name, value in phases.items()))
        running = time.perf_counter()
        n_jobs = choose_jobs(
            jobs, len(chosen), data_bytes=dataset.expression.nbytes, available_bytes=available_memory()
        )
        all_runs = run_splits(
            dataset,
            Path(data_dir) / "data.h5ad",
            [(split.name, split_path) for split, split_path in chosen],
            staging,
            arms,
            seeds,
            config_source,
            overrides,
            progress,
            n_jobs,
        )
        sections, runs_info = _collect_splits(staging, chosen, arms, all_runs)
        phases["splits"] = time.perf_counter() - running
        info = {
            "data": {
                "path": str(shown_path),
                "n_cells": dataset.n_cells,
                "n_genes": dataset.n_genes,
                "cell_types": dataset.cell_types,
            },
            "arms": list(arms),
            "seeds": seeds,
            "splits": [split.name for split, _ in chosen],
            "jobs": n_jobs,
            **runs_info,
            "total_seconds": round(time.perf_counter() - started, 1),
            # Before the report: the report's own seconds are logged, not stored in the report.
            "phase_seconds": {name: round(value, 1) for name, value in phases.items()},
        }
        title = f"ptrag benchmark: {source} ({', '.join(arms)}; {seeds} seed{'s' if seeds != 1 else ''})"
        reporting = time.perf_counter()
        summary = build_summary(sections, baseline=BASELINE, n_seeds=seeds, info=info, title=title)
        write_report(summary, staging)
        log.info("[benchmark] report written in %.1f s", time.perf_counter() - reporting)
    log.info("[benchmark] done in %.0f s → %s", time.perf_counter() - started, Path(out) / "report.html")
    return summary


def _collect_splits(
    out: Path,
    chosen: list[tuple[BenchmarkSplit, Path]],
    arms: Sequence[str],
    all_runs: dict[str, BenchmarkRuns],
) -> tuple[dict[str, SplitResults], dict[str, Any]]:
    """The report's inputs and run facts from every split's runs; writes results_all.csv."""
    sections: dict[str, SplitResults] = {}
    results: list[pd.DataFrame] = []
    per_split_info: dict[str, Any] = {}
    config: dict[str, object] = {}
    for split, _ in chosen:
        runs = all_runs[split.name]
        config = runs.config
        table = long_results(runs)
        results.append(table.assign(split=split.name))
        sections[split.name] = SplitResults(
            table,
            {arm: "arm" for arm in arms}
            | {name: row_kind(name) for name in runs.references}
            | {mean_on_controls_name(arm): "diagnostic" for arm in arms},
            label=split.label,
            description=split.description,
            retrieval=_per_arm(runs, "retrieval"),
            training=_per_arm(runs, "training_log"),
            info=runs.split_info,
            spread=_spread(runs),
        )
        per_split_info[split.name] = {
            "per_seed": _per_seed(runs),
            "phase_seconds": {name: round(value, 2) for name, value in runs.phase_seconds.items()},
        }
    combined = pd.concat(results, ignore_index=True)
    combined[["split", *[c for c in combined.columns if c != "split"]]].to_csv(
        out / "results_all.csv", index=False
    )
    return sections, {"config": config, "runs": per_split_info}
