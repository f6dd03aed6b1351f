"""Options shared by several subcommands."""

from __future__ import annotations

import argparse

from ptrag.config import Config, DataConfig, load_config


def add_data_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("data columns (detected when not given)")
    group.add_argument("--perturbation-column", help="obs column with the perturbation target (e.g. gene).")
    group.add_argument("--cell-type-column", help="obs column with the cell type (e.g. cell_line).")
    group.add_argument("--batch-column", help="obs column with the batch (e.g. gem_group).")
    group.add_argument("--control-label", help="label of control cells (e.g. non-targeting).")
    group.add_argument(
        "--expression", help="expression to read: auto (obsm['X_hvg'], else X), X, an obsm key, layers/<key>."
    )


def add_config_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        default="cpu-small",
        help="preset (cpu-small, paper) or a TOML/YAML config file (default: cpu-small).",
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
        "perturbation_column": args.perturbation_column,
        "cell_type_column": args.cell_type_column,
        "batch_column": args.batch_column,
        "control_label": args.control_label,
        "expression": args.expression,
    }
    return [f'data.{key}="{value}"' for key, value in pairs.items() if value is not None]


def config_from_args(args: argparse.Namespace, extra: list[str] | None = None) -> Config:
    return load_config(args.config, [*data_overrides(args), *args.overrides, *(extra or [])])


def data_config_from_args(args: argparse.Namespace) -> DataConfig:
    return load_config(None, data_overrides(args)).data
