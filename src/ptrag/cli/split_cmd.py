"""``ptrag split DATA.h5ad --mode fewshot|zeroshot ... --out split.toml``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ptrag.cli.common import add_progress_option
from ptrag.cli.inspect_cmd import add_data_options, data_config

__all__ = ["DESCRIPTION", "add_parser", "run"]

DESCRIPTION = (
    "Generate a seeded split of a screen and write it in STATE's TOML format. Few-shot holds out a "
    "fraction of the listed cell types' perturbations for val and test (they may still be seen in other "
    "cell types); unseen holds out a fraction of the screen's perturbations from every cell type "
    "(GEARS-style: no cell of them trains anywhere); zero-shot holds out whole cell types."
)


def add_parser(sub: Any, name: str, help_text: str) -> None:
    parser = sub.add_parser(name, help=help_text, description=DESCRIPTION)
    add_data_options(parser)
    parser.add_argument(
        "--mode",
        choices=("fewshot", "unseen", "zeroshot"),
        default="fewshot",
        help="Kind of split (default fewshot).",
    )
    parser.add_argument(
        "--cell-types",
        nargs="+",
        default=None,
        help="Cell types to hold out from (few-shot) or hold out entirely (zero-shot). "
        "Default for few-shot: every cell type. Required for zero-shot.",
    )
    parser.add_argument(
        "--val-fraction",
        type=float,
        default=0.1,
        help="Few-shot and unseen: fraction of perturbations for val (default 0.1).",
    )
    parser.add_argument(
        "--test-fraction",
        type=float,
        default=0.2,
        help="Few-shot and unseen: fraction of perturbations for test (default 0.2).",
    )
    parser.add_argument(
        "--role", choices=("val", "test"), default="test", help="Zero-shot: role of the held-out cell types."
    )
    parser.add_argument("--seed", type=int, default=0, help="Seed of the random choice (default 0).")
    parser.add_argument(
        "--name",
        default=None,
        help="Dataset name used in the TOML keys (default: the file name without .h5ad).",
    )
    parser.add_argument("--out", required=True, type=Path, help="Where to write the split TOML.")
    parser.add_argument("--overwrite", action="store_true", help="Replace --out if it already exists.")
    add_progress_option(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ptrag.data.loading import load_dataset
    from ptrag.data.splits import generate_fewshot, generate_unseen, generate_zeroshot
    from ptrag.errors import OutputError, SplitError

    if args.out.exists() and not args.overwrite:
        raise OutputError(
            f"{args.out} already exists. Pass --overwrite to replace it, or choose another --out."
        )
    dataset = load_dataset(args.data, data_config(args))
    name = args.name or Path(args.data).stem
    if args.mode == "fewshot":
        cell_types = args.cell_types or dataset.cell_types
        split = generate_fewshot(
            dataset, cell_types, args.val_fraction, args.test_fraction, args.seed, name=name
        )
    elif args.mode == "unseen":
        if args.cell_types:
            raise SplitError("--mode unseen holds perturbations out of every cell type; drop --cell-types.")
        split = generate_unseen(dataset, args.val_fraction, args.test_fraction, args.seed, name=name)
    else:
        if not args.cell_types:
            raise SplitError("--mode zeroshot needs --cell-types naming the cell type(s) to hold out.")
        split = generate_zeroshot(dataset, args.cell_types, role=args.role, name=name)
    split.write(args.out)
    counts = {role: len(split.groups(dataset, role)) for role in ("train", "val", "test")}
    print(
        f"Wrote {args.mode} split {name!r} to {args.out}: (cell type, perturbation) groups "
        f"train {counts['train']}, val {counts['val']}, test {counts['test']}."
    )
    return 0
