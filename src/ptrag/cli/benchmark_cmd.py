"""``ptrag benchmark``: every arm on the same split, steps and seeds, with references and a report."""

from __future__ import annotations

import argparse
from typing import Any

from ptrag.cli.common import add_config_options, add_data_options, data_overrides


def add_parser(sub: Any, name: str, help_text: str) -> None:
    from ptrag.config.arms import ARMS, default_benchmark_arms

    parser = sub.add_parser(
        name,
        help=help_text,
        description=help_text
        + " Writes summary.json, report.md, report.html (figures embedded), results_all.csv, and each"
        " arm's run directory and predictions. Without --data it simulates the --preset screen first.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--data", help="directory with data.h5ad and split.toml (default: simulate --preset)."
    )
    parser.add_argument("--preset", default="replogle-like", help="simulation preset used without --data.")
    parser.add_argument(
        "--arms",
        default=",".join(default_benchmark_arms()),
        help=f"comma-separated arms, from: {', '.join(ARMS)}.",
    )
    parser.add_argument("--seeds", type=int, default=1, help="seeds per arm (3 for headline claims).")
    parser.add_argument(
        "--out", required=True, help="output directory; written beside it, moved into place when done."
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output directory.")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars.")
    add_config_options(parser)
    add_data_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ptrag.benchmark.pipeline import run_benchmark
    from ptrag.config import DEFAULT_PRESET, parse_arms
    from ptrag.errors import ConfigError
    from ptrag.evaluation.metric_registry import metrics_where
    from ptrag.report.render import fmt

    arms = [arm.name for arm in parse_arms(args.arms)]
    if args.seeds < 1:
        raise ConfigError(f"--seeds must be at least 1, got {args.seeds}.")
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
    )
    shown = metrics_where("headline")
    widths = [max(len(m), 8) + 2 for m in shown]
    print(f"{'method':<14}" + "".join(f"{m:>{w}}" for m, w in zip(shown, widths, strict=True)))
    for method, entry in summary["methods"].items():
        cells = [fmt(entry["metrics"].get(m, {}).get("mean")) for m in shown]
        print(f"{method:<14}" + "".join(f"{c:>{w}}" for c, w in zip(cells, widths, strict=True)))
    print("\n".join(summary["verdict"]))
    print(f"report: {args.out}/report.html")
    return 0
