"""``ptrag memory add RUN_DIR --data NEW.h5ad --out NEW_RUN_DIR``: grow a trained run's evidence memory."""

from __future__ import annotations

import argparse
from typing import Any

from ptrag.cli.common import add_data_options, add_progress_option, data_overrides

__all__ = ["add_parser", "run"]

ADD_DESCRIPTION = (
    "Add newly measured (perturbation, cell type) evidence to a trained run of a memory arm, without "
    "retraining. Every perturbation in NEW.h5ad is measured against that file's own control cells of "
    "the same cell type (mean shift, its per-gene standard error, its cell count), using the run's "
    "genes and normalisation; the run is copied to --out with the larger memory, and `ptrag predict "
    "NEW_RUN_DIR ...` retrieves the new evidence. RUN_DIR itself is never modified. What the new "
    "evidence changes: predictions of the same perturbation in other cell types, and of neighbouring "
    "perturbations in the same cell type. What it does not change: the prediction of an added "
    "(perturbation, cell type) pair itself, because a query never retrieves its own measurement "
    "(held-out evaluation must not see it); for a measured pair, use the measurement. A cell type "
    "the run was never trained on gets evidence rows, not training: the command says so."
)


def add_parser(sub: Any, name: str, help_text: str) -> None:
    parser = sub.add_parser(name, help=help_text, description=help_text)
    actions = parser.add_subparsers(dest="memory_action", metavar="ACTION", required=True)
    add = actions.add_parser(
        "add", help="Add measured evidence to a run's memory.", description=ADD_DESCRIPTION
    )
    add.add_argument("run_dir", metavar="RUN_DIR", help="a run directory of a memory arm.")
    add.add_argument("--data", required=True, help="the new measurements (.h5ad) with their own controls.")
    add.add_argument("--out", required=True, help="the new run directory (RUN_DIR is left as it is).")
    add.add_argument(
        "--replace",
        action="store_true",
        help="use the new measurement where the memory already holds a (perturbation, cell type).",
    )
    add.add_argument("--overwrite", action="store_true", help="replace an existing --out directory.")
    add_data_options(add)
    add_progress_option(add)
    add.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ptrag.api import Model
    from ptrag.io import check_output_dir

    model = Model.load(args.run_dir)
    check_output_dir(args.out, overwrite=args.overwrite)
    dataset = model.load_data(args.data, data_overrides(args))
    _, update = model.add_evidence(dataset, args.out, replace=args.replace, overwrite=args.overwrite)
    print(f"memory add: {update.message}")
    return 0
