"""``ptrag train``: train one arm on a screen and a split into a run directory."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ptrag.cli.common import add_config_options, add_data_options, add_progress_option, data_overrides

__all__ = ["add_parser", "run"]

RESUME_HELP = (
    "continue the interrupted run in --out (or extend a finished one with a larger --steps). The "
    "run's own config and split are used: other options may only repeat them, except --steps, "
    "--accelerator, --devices, --num-nodes, --strategy and train.num_threads, train.tensorboard, "
    "train.wandb. Resuming a finished run changes nothing."
)


def add_parser(sub: Any, name: str, help_text: str) -> None:
    from ptrag.config import ARMS, DEFAULT_PRESET

    parser = sub.add_parser(
        name,
        help=help_text,
        description=help_text
        + " The run directory receives checkpoints/last.ckpt and checkpoints/best.ckpt (lowest validation"
        " loss; each with the config, gene list, vocabulary and databases), config.toml, split.toml and"
        " metrics.csv. It is written beside --out and moved into place only when training has finished:"
        f" a failed run leaves an earlier one intact. Options left out keep the value of --config"
        f" (default preset: {DEFAULT_PRESET}).",
    )
    parser.add_argument("data", help="the screen (.h5ad).")
    parser.add_argument(
        "--split", help="STATE-format split TOML (see `ptrag split`); required unless --resume."
    )
    parser.add_argument("--out", required=True, help="run directory to create.")
    parser.add_argument(
        "--arm",
        choices=list(ARMS),
        metavar="ARM",
        help="model arm (model.arm): " + "; ".join(f"{a.name}: {a.description}" for a in ARMS.values()),
    )
    parser.add_argument("--seed", type=int, help="random seed (train.seed).")
    parser.add_argument("--steps", type=int, help="training steps, at least 1 (train.max_steps).")
    parser.add_argument("--resume", action="store_true", help=RESUME_HELP)
    parser.add_argument("--overwrite", action="store_true", help="replace an existing run directory.")
    parser.add_argument("--accelerator", help="cpu, gpu or auto (train.accelerator).")
    parser.add_argument("--devices", help="devices per node, e.g. 1, 4 or auto (train.devices).")
    parser.add_argument("--num-nodes", type=int, help="nodes for multi-node DDP (train.num_nodes).")
    parser.add_argument("--strategy", help="Lightning strategy, e.g. ddp (train.strategy).")
    add_progress_option(parser)
    add_config_options(parser)
    add_data_options(parser)
    parser.set_defaults(func=run)


def _overrides(args: argparse.Namespace) -> list[str]:
    """Every config setting the command line names, as ``section.key=value``."""
    flags = {
        "model.arm": args.arm,
        "train.seed": args.seed,
        "train.max_steps": args.steps,
        "train.accelerator": args.accelerator,
        "train.devices": args.devices,
        "train.num_nodes": args.num_nodes,
        "train.strategy": args.strategy,
    }
    named = [f'{k}="{v}"' if isinstance(v, str) else f"{k}={v}" for k, v in flags.items() if v is not None]
    return [*data_overrides(args), *args.overrides, *named]


def _config(args: argparse.Namespace) -> Any:
    from ptrag.config import DEFAULT_PRESET, apply_overrides, load_config
    from ptrag.errors import ConfigError
    from ptrag.training.resume import resumed_config, run_config_for_resume

    if args.steps is not None and args.steps < 1:
        raise ConfigError(f"--steps must be at least 1, got {args.steps}.")
    if not args.resume:
        if args.split is None:
            raise ConfigError("--split is required (a STATE-format split TOML; see `ptrag split`).")
        return load_config(args.config or DEFAULT_PRESET, _overrides(args))
    # Resuming: the run's config, which the options may only repeat (or change where resumable).
    saved = run_config_for_resume(Path(args.out))
    overrides = _overrides(args)
    requested = load_config(args.config, overrides) if args.config else apply_overrides(saved, overrides)
    return resumed_config(saved, requested, Path(args.out))


def run(args: argparse.Namespace) -> int:
    from ptrag.api import Model
    from ptrag.data.loading import load_dataset
    from ptrag.data.splits import Split

    config = _config(args)
    split = Split.read(args.split) if args.split else None
    dataset = load_dataset(args.data, config.data, set_len=config.train.cell_set_len)
    model = Model(config).fit(
        dataset,
        split,
        args.out,
        resume=args.resume,
        overwrite=args.overwrite,
        progress=not args.no_progress,
        verbose=args.verbose,
    )
    assert model.outcome is not None
    print(model.outcome.message)
    return 0
