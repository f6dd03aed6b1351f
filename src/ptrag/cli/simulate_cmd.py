"""``ptrag simulate``: write a simulated Replogle-like CRISPRi screen, optionally with its realism report."""

from __future__ import annotations

import argparse
from typing import Any

from ptrag.cli.common import add_progress_option
from ptrag.simulation.presets import DEFAULT_SIMULATION, PRESETS

__all__ = ["DESCRIPTION", "add_parser", "run"]

PRESET_NAMES = tuple(PRESETS)

DESCRIPTION = """\
Write a simulated CRISPRi Perturb-seq screen grounded in real gene biology (genes, complexes and GO
membership from the bundled gene table): DIR/data.h5ad (Replogle-Nadig schema), DIR/split.toml
(few-shot per cell line), DIR/split_unseen.toml (a share of perturbations held out of every cell
line, as `ptrag split --mode unseen` makes it), DIR/truth.parquet (true mean log1p shift of every
cell line x perturbation) and DIR/perturbations.csv (the generative parameters of each condition).
See docs/simulation.md.
"""


def add_parser(sub: Any, name: str, help_text: str) -> None:
    parser = sub.add_parser(
        name, help=help_text, description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--preset",
        choices=PRESET_NAMES,
        default=DEFAULT_SIMULATION,
        help="Screen size: tiny (tests, seconds), replogle-like (4 lines, 2,000 genes, the bundled "
        "benchmark), replogle-hetero (replogle-like with a per-cell basal state the response depends "
        "on, stored in obs['sim_state'] for oracles only) or scale-1m (about 1M cells, for memory and "
        "speed benchmarks). Default: %(default)s.",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="Random seed; the same seed gives identical files."
    )
    parser.add_argument(
        "--out", required=True, help="Output directory (created; must be empty unless --overwrite)."
    )
    parser.add_argument("--overwrite", action="store_true", help="Replace a non-empty output directory.")
    parser.add_argument(
        "--report",
        action="store_true",
        help="Also measure how realistic the screen is (correlations, near-null share, noise floor), "
        "print the table and save it as DIR/realism.json.",
    )
    add_progress_option(parser, "--quiet")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ptrag.io import staged_output
    from ptrag.simulation.api import simulate
    from ptrag.simulation.realism import format_report, write_realism_report

    # Written beside --out and moved into place when complete: an old screen stays until then.
    with staged_output(args.out, overwrite=args.overwrite) as staging:
        result = simulate(args.preset, args.seed, staging, overwrite=True, progress=not args.no_progress)
        report = write_realism_report(staging) if args.report else None
    print(
        f"Wrote {result.n_cells} cells x {result.n_genes} genes, {result.n_conditions} "
        f"(cell line, perturbation) conditions to {args.out} in {result.seconds:.1f} s:\n"
        f"  {result.data_path.name}, {result.split_path.name}, {result.unseen_split_path.name}, "
        f"{result.truth_path.name}, {result.conditions_path.name}"
    )
    if report is not None:
        print(format_report(report))
    return 0
