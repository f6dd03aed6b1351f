"""``ptrag benchmark``: every arm on the same splits, steps and seeds, with references and a report."""

from __future__ import annotations

import argparse
from typing import Any

from ptrag.cli.common import add_config_options, add_data_options, add_progress_option, data_overrides
from ptrag.simulation.presets import DEFAULT_SIMULATION

__all__ = ["add_parser", "run"]


def add_parser(sub: Any, name: str, help_text: str) -> None:
    from ptrag.config.arms import ARMS, ablation_arms, default_benchmark_arms

    parser = sub.add_parser(
        name,
        help=help_text,
        description=help_text
        + " Runs every arm on each split the data offers (few-shot split.toml, unseen split_unseen.toml)"
        " and writes one section per split to summary.json, report.md, report.html (figures embedded) and"
        " results_all.csv, plus each arm's run directory and predictions. Without --data it simulates the"
        " --preset screen first (both splits).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--data",
        help="directory with data.h5ad and split.toml, optionally split_unseen.toml "
        "(default: simulate --preset).",
    )
    parser.add_argument("--preset", default=DEFAULT_SIMULATION, help="simulation preset used without --data.")
    parser.add_argument(
        "--arms",
        default=",".join(default_benchmark_arms()),
        help=f"comma-separated arms, from: {', '.join(ARMS)}.",
    )
    parser.add_argument(
        "--ablations",
        action="store_true",
        help=f"add the ablation arms ({', '.join(ablation_arms())}): each isolates one component.",
    )
    parser.add_argument(
        "--splits",
        default=None,
        help="comma-separated splits to run: fewshot, unseen (default: every split the data offers).",
    )
    parser.add_argument("--seeds", type=int, default=1, help="seeds per arm (3 for headline claims).")
    parser.add_argument(
        "--jobs",
        type=int,
        default=0,
        help="processes running the splits side by side, the cores shared between them, each with its "
        "own copy of the data (0: one per split, up to the available cores and as many as the available "
        "memory holds; 1: one after the other, with progress bars).",
    )
    parser.add_argument(
        "--out", required=True, help="output directory; written beside it, moved into place when done."
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output directory.")
    add_progress_option(parser)
    add_config_options(parser)
    add_data_options(parser)
    parser.set_defaults(func=run)


def print_summary(summary: dict[str, Any]) -> None:
    """Per split: the headline metrics of every method, then one sentence per arm."""
    from ptrag.evaluation.metric_registry import metrics_where
    from ptrag.report.numbers import fmt

    shown = [m for m in metrics_where("headline") if m in summary["metrics"]]
    for name, section in summary["splits"].items():
        n_test = section["info"].get("n_test_groups", "?")
        print(f"\n== {section['label'] or name} split ({n_test} test perturbations) ==")
        rows = {
            method: [fmt(entry["metrics"].get(m, {}).get("mean")) for m in shown]
            for method, entry in section["methods"].items()
        }
        widths = [max(len(m), *(len(cells[i]) for cells in rows.values())) + 2 for i, m in enumerate(shown)]
        print(f"{'method':<14}" + "".join(f"{m:>{w}}" for m, w in zip(shown, widths, strict=True)))
        for method, cells in rows.items():
            print(f"{method:<14}" + "".join(f"{c:>{w}}" for c, w in zip(cells, widths, strict=True)))
        print("\n".join(f"- {h['sentence']}" for h in summary["headline"] if h["split"] == name))
    for warning in summary["warnings"]:
        print(f"\nWarning: {warning}")


def run(args: argparse.Namespace) -> int:
    from ptrag.benchmark.pipeline import run_benchmark
    from ptrag.benchmark.splits import parse_splits
    from ptrag.config import DEFAULT_PRESET, parse_arms
    from ptrag.config.arms import ablation_arms
    from ptrag.errors import ConfigError

    arms = [arm.name for arm in parse_arms(args.arms)]
    if args.ablations:
        arms += [name for name in ablation_arms() if name not in arms]
    if args.seeds < 1:
        raise ConfigError(f"--seeds must be at least 1, got {args.seeds}.")
    if args.jobs < 0:
        raise ConfigError(f"--jobs must be 0 (automatic) or more, got {args.jobs}.")
    summary = run_benchmark(
        args.out,
        data_dir=args.data,
        preset=args.preset,
        arms=arms,
        seeds=args.seeds,
        config_source=args.config or DEFAULT_PRESET,
        overrides=[*data_overrides(args), *args.overrides],
        overwrite=args.overwrite,
        progress=not args.no_progress,
        splits=parse_splits(args.splits),
        jobs=args.jobs,
    )
    print_summary(summary)
    print(f"report: {args.out}/report.html")
    return 0
