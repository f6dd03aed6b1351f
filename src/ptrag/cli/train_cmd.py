"""``ptrag train``: train one arm on a screen and a split into a run directory."""

from __future__ import annotations

import argparse
from typing import Any

from ptrag.cli.common import add_config_options, add_data_options, config_from_args


def add_parser(sub: Any, name: str, help_text: str) -> None:
    parser = sub.add_parser(
        name,
        help=help_text,
        description=help_text
        + " The run directory receives the Lightning checkpoint (with config, gene list and vocabulary),"
        " config.toml, genes.txt, perturbations.json, retrieval.npz, embeddings.json and metrics.csv."
        " Options left out keep the value of --config (default preset: cpu-small).",
    )
    parser.add_argument("data", help="the screen (.h5ad).")
    parser.add_argument("--split", required=True, help="STATE-format split TOML (see `ptrag split`).")
    parser.add_argument("--out", required=True, help="run directory to create.")
    parser.add_argument(
        "--arm", choices=["st", "vanilla_rag", "ptrag", "memory"], help="model arm (model.arm)."
    )
    parser.add_argument("--seed", type=int, help="random seed (train.seed).")
    parser.add_argument("--steps", type=int, help="training steps (train.max_steps).")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run in --out.")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing run directory.")
    parser.add_argument("--accelerator", help="cpu, gpu or auto (train.accelerator).")
    parser.add_argument("--devices", help="devices per node, e.g. 1, 4 or auto (train.devices).")
    parser.add_argument("--num-nodes", type=int, help="nodes for multi-node DDP (train.num_nodes).")
    parser.add_argument("--strategy", help="Lightning strategy, e.g. ddp (train.strategy).")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar.")
    add_config_options(parser)
    add_data_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ptrag.data.loading import load_dataset
    from ptrag.data.splits import Split
    from ptrag.training.run import train

    flags = {
        "model.arm": args.arm,
        "train.seed": args.seed,
        "train.max_steps": args.steps,
        "train.accelerator": args.accelerator,
        "train.devices": args.devices,
        "train.num_nodes": args.num_nodes,
        "train.strategy": args.strategy,
    }
    extra = [f'{k}="{v}"' if isinstance(v, str) else f"{k}={v}" for k, v in flags.items() if v is not None]
    config = config_from_args(args, extra)
    dataset = load_dataset(args.data, config.data, set_len=config.train.cell_set_len)
    split = Split.read(args.split)
    result = train(
        config,
        dataset,
        split,
        args.out,
        resume=args.resume,
        overwrite=args.overwrite,
        progress=not args.no_progress,
    )
    print(f"trained {config.model.arm} for {config.train.max_steps} steps → {result.run_dir}")
    return 0
