"""Options shared by several subcommands."""

from __future__ import annotations

import argparse

from ptrag.config import DEFAULT_PRESET, PRESETS

__all__ = [
    "add_checkpoint_option",
    "add_config_options",
    "add_data_options",
    "add_progress_option",
    "data_overrides",
]


def add_data_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("data columns (detected when not given)")
    group.add_argument("--perturbation-column", help="obs column with the perturbation target (e.g. gene).")
    group.add_argument("--cell-type-column", help="obs column with the cell type (e.g. cell_line).")
    group.add_argument("--batch-column", help="obs column with the batch (e.g. gem_group).")
    group.add_argument("--control-label", help="label of control cells (e.g. non-targeting).")
    group.add_argument(
        "--expression", help="expression to read: auto (obsm['X_hvg'], else X), X, an obsm key, layers/<key>."
    )


def add_progress_option(parser: argparse.ArgumentParser, *aliases: str) -> None:
    """``--no-progress``, which every command has: no progress report at all (``ptrag.progress``)."""
    parser.add_argument(
        "--no-progress",
        *aliases,
        dest="no_progress",
        action="store_true",
        help="show no progress (by default it goes to stderr: a bar on a terminal, else a line every "
        "30 s).",
    )


def add_checkpoint_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--checkpoint",
        default="best",
        metavar="best|last|FILE",
        help="which weights: best (lowest validation loss; last.ckpt in a run that never validated), "
        "last, or a checkpoint file (default: best).",
    )


def add_config_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        default=None,
        help=f"preset ({', '.join(PRESETS)}) or a TOML/YAML config file (default: {DEFAULT_PRESET}).",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override one config value, e.g. --set train.max_steps=2000 (repeatable).",
    )


DATA_FLAGS = ("perturbation_column", "cell_type_column", "batch_column", "control_label", "expression")


def data_overrides(args: argparse.Namespace) -> list[str]:
    """``data.*`` overrides for the data options a command has and the user gave."""
    given = {key: getattr(args, key, None) for key in DATA_FLAGS}
    overrides = [f'data.{key}="{value}"' for key, value in given.items() if value is not None]
    if getattr(args, "n_top_genes", None) is not None:
        overrides.append(f"data.n_top_genes={args.n_top_genes}")
    return overrides
