"""``ptrag predict``: predicted cells for held-out perturbations, or for in-silico queries."""

from __future__ import annotations

import argparse
from typing import Any

from ptrag.cli.common import add_checkpoint_option, add_data_options, add_progress_option, data_overrides
from ptrag.keys import PERT_COL

__all__ = ["add_parser", "run"]


def add_parser(sub: Any, name: str, help_text: str) -> None:
    parser = sub.add_parser(
        name,
        help=help_text,
        description=help_text
        + " Writes adata_pred.h5ad and adata_real.h5ad (identical var_names, cell-eval layout),"
        " references.npz (the simple references' shifts, which `ptrag evaluate` scores beside the model)"
        " and retrieval.csv (per set: the query, its K candidates with cosine, keep weights, kept or"
        " not). With --queries, predicts perturbations never measured from control cells only, and"
        " writes query_effects.csv (each query's effect size, expected effect and 90% interval).",
    )
    parser.add_argument("run_dir", help="a run directory written by `ptrag train`.")
    parser.add_argument(
        "--data", required=True, help="screen (.h5ad); with --queries, control cells suffice."
    )
    parser.add_argument(
        "--split", default="test", choices=["train", "val", "test"], help="which groups to predict."
    )
    parser.add_argument("--split-file", help="split TOML (default: the run's split.toml).")
    parser.add_argument(
        "--queries",
        help="CSV with columns cell_type, perturbation[, n_cells] for in-silico prediction.",
    )
    add_checkpoint_option(parser)
    parser.add_argument(
        "--out",
        required=True,
        help="output directory; written beside it and moved into place when complete.",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed for pairing control cells.")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output directory.")
    add_progress_option(parser)
    # For files that name their columns differently from the training file (default: the run's).
    add_data_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ptrag.api import Model
    from ptrag.data.splits import Split
    from ptrag.io import check_free_space, check_output_dir
    from ptrag.prediction.insilico import check_query_size, read_queries
    from ptrag.prediction.write import held_out_prediction_bytes, prediction_bytes

    model = Model.load(args.run_dir, checkpoint=args.checkpoint)
    # Check the cheap inputs before the screen is read; an existing output stays until the new one is done.
    queries = read_queries(args.queries) if args.queries else None
    if queries is not None:
        check_query_size(queries, len(model.genes))
    check_output_dir(args.out, overwrite=args.overwrite)
    dataset = model.load_data(args.data, data_overrides(args))
    split = None
    n_genes = len(model.genes)
    if queries is None:
        split = Split.read(args.split_file) if args.split_file else model.run_split()
        needed = held_out_prediction_bytes(dataset, split.groups(dataset, args.split), n_genes)
    else:
        needed = prediction_bytes(n_genes, int(queries["n_cells"].sum()))
    check_free_space(args.out, needed, "the prediction")
    prediction = model.predict(
        dataset,
        split=args.split,
        split_file=split,
        queries=queries,
        seed=args.seed,
        progress=not args.no_progress,
    )
    prediction.write(args.out, overwrite=args.overwrite)
    n_pred = int((prediction.adata_pred.obs[PERT_COL] != dataset.control_label).sum())
    print(f"predicted {n_pred} cells → {args.out}")
    return 0
