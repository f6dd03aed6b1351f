"""``ptrag predict``: predicted cells for held-out perturbations, or for in-silico queries."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ptrag.cli.common import add_data_options, data_overrides


def add_parser(sub: Any, name: str, help_text: str) -> None:
    parser = sub.add_parser(
        name,
        help=help_text,
        description=help_text
        + " Writes adata_pred.h5ad and adata_real.h5ad (identical var_names, cell-eval layout) and"
        " retrieval.csv (per set: the query, its K candidates with cosine, keep weights, kept or not)."
        " With --queries, predicts perturbations never measured from control cells only.",
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
    parser.add_argument("--out", required=True, help="output directory.")
    parser.add_argument("--seed", type=int, default=0, help="seed for pairing control cells.")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output directory.")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar.")
    # For files that name their columns differently from the training file (default: the run's).
    add_data_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ptrag.config.loading import apply_overrides
    from ptrag.data.loading import load_dataset
    from ptrag.data.splits import Split
    from ptrag.io import prepare_output_dir
    from ptrag.prediction.insilico import predict_queries, read_queries
    from ptrag.prediction.predict import TrainedModel, predict_sets
    from ptrag.prediction.write import write_prediction

    trained = TrainedModel.load(args.run_dir)
    # Check the cheap inputs before the output directory is created or the screen is read.
    queries = read_queries(args.queries) if args.queries else None
    prepare_output_dir(args.out, overwrite=args.overwrite)
    data_config = apply_overrides(trained.config, data_overrides(args)).data
    dataset = load_dataset(args.data, data_config, genes=trained.spec.genes, prediction_input=True)
    if queries is not None:
        prediction = predict_queries(trained, dataset, queries, seed=args.seed)
    else:
        split = Split.read(args.split_file or Path(args.run_dir) / "split.toml")
        split.validate(dataset)
        prediction = predict_sets(
            trained,
            dataset,
            split.groups(dataset, args.split),
            seed=args.seed,
            role=args.split,
            progress=not args.no_progress,
        )
    out = write_prediction(prediction, args.out, overwrite=True)
    if queries is None:  # the simple references' shifts, for `ptrag evaluate` to score beside the model
        from ptrag.evaluation import write_reference_shifts

        write_reference_shifts(out, dataset, split, prediction.adata_real, trained.config.embedding.source)
    n_pred = int((prediction.adata_pred.obs["target_gene"] != dataset.control_label).sum())
    print(f"predicted {n_pred} cells → {out}")
    return 0
