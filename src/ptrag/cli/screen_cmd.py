"""``ptrag screen``: predict the knockdown of many genes in one cell type and rank them."""

from __future__ import annotations

import argparse
from typing import Any

from ptrag.cli.common import add_checkpoint_option, add_data_options, add_progress_option, data_overrides
from ptrag.keys import UNS_KEY

__all__ = ["add_parser", "run"]


def add_parser(sub: Any, name: str, help_text: str) -> None:
    parser = sub.add_parser(
        name,
        help=help_text,
        description=help_text
        + " Every gene starts from the same control cells of --cell-type. Writes screen.csv (genes ranked"
        " by expected effect with its 90% interval, calibrated on the run's validation groups when --data"
        " holds them, and the model's own effect size, the top responding genes, the nearest measured"
        " perturbation and its cosine, and a low-evidence flag), screen_pseudobulk.h5ad (one row per"
        " gene; layers['delta'] is the change from the control mean), screen.png, and with --cells"
        " screen_cells.h5ad.",
    )
    parser.add_argument("run_dir", help="a run directory written by `ptrag train`.")
    parser.add_argument("--data", required=True, help="screen (.h5ad) with control cells of --cell-type.")
    parser.add_argument("--cell-type", required=True, help="the cell type to screen in (e.g. k562).")
    parser.add_argument(
        "--genes",
        default="all",
        help="all (every gene with an embedding: 20,598 with the bundled table), a file with one symbol "
        "per line, or symbols separated by commas (default: all).",
    )
    parser.add_argument(
        "--n-cells", type=int, help="predicted cells per gene (default: one set, train.cell_set_len)."
    )
    parser.add_argument(
        "--cells", action="store_true", help="also write every predicted cell (screen_cells.h5ad)."
    )
    parser.add_argument(
        "--low-evidence-cosine",
        type=float,
        help="flag genes never measured whose nearest measured perturbation is less similar than this "
        "(default: the 5th percentile of the measured perturbations' own nearest-neighbour cosines).",
    )
    add_checkpoint_option(parser)
    parser.add_argument("--out", required=True, help="output directory; replaced only when complete.")
    parser.add_argument("--seed", type=int, default=0, help="seed for the shared control draw.")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output directory.")
    add_progress_option(parser)
    add_data_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ptrag.api import Model
    from ptrag.errors import DataError
    from ptrag.io import check_free_space, check_output_dir
    from ptrag.prediction.effect_interval import EffectInterval
    from ptrag.prediction.screen import check_low_evidence_cosine, read_gene_list, screen_bytes
    from ptrag.run.vocabulary import screenable_genes

    if args.n_cells is not None and args.n_cells < 1:
        raise DataError(f"--n-cells must be at least 1, got {args.n_cells}.")
    check_low_evidence_cosine(args.low_evidence_cosine)
    genes = read_gene_list(args.genes)
    model = Model.load(args.run_dir, checkpoint=args.checkpoint)
    check_output_dir(args.out, overwrite=args.overwrite)
    dataset = model.load_data(args.data, data_overrides(args))
    n_screened = (
        len(genes)
        if genes is not None
        else len(screenable_genes(model.config, model.checkpoint.spec.prior_tables))
    )
    cells = (args.n_cells or model.config.train.cell_set_len) if args.cells else 0
    check_free_space(args.out, screen_bytes(n_screened, len(model.genes), cells), "the screen")
    result = model.screen(
        dataset,
        args.cell_type,
        genes,
        n_cells=args.n_cells,
        keep_cells=args.cells,
        low_evidence_cosine=args.low_evidence_cosine,
        seed=args.seed,
        progress=not args.no_progress,
    )
    result.write(args.out, overwrite=args.overwrite)
    table = result.table
    top = ", ".join(table["perturbation"].head(5))
    print(
        f"screened {len(table)} genes in {args.cell_type} ({int(table['low_evidence'].sum())} low-evidence); "
        f"strongest predicted: {top} → {args.out}"
    )
    interval = EffectInterval.from_state(result.pseudobulk.uns[UNS_KEY]["effect_interval"])
    print(
        interval.describe()
        if interval is not None
        else "effect_low/effect_high are empty: the data holds none of the run's validation groups "
        "(screen on the training data to calibrate them)."
    )
    return 0
