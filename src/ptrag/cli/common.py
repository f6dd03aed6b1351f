"""Options shared by several subcommands."""

from __future__ import annotations

import argparse

from ptrag.config import DEFAULT_PRESET, PRESETS


def add_data_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("data columns (detected when not given)")
    group.add_argument("--perturbation-column", help="obs column with the perturbation target (e.g. gene).")
    group.add_argument("--cell-type-column", help="obs column with the cell type (e.g. cell_line).")
    group.add_argument("--batch-column", help="obs column with the batch (e.g. gem_group).")
    group.add_argument("--control-label", help="label of control cells (e.g. non-targeting).")


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


def data_overrides(args: argparse.Namespace) -> list[str]:
    pairs = {
        "perturbation_column": getattr(args, "perturbation_column", None),
        "cell_type_column": getattr(args, "cell_type_column", None),
        "batch_column": getattr(args, "batch_column", None),
        "control_label": getattr(args, "control_label", None),
    }
    return [f'data.{key}="{value}"' for key, value in pairs.items() if value is not None]
