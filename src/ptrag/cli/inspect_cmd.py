"""``ptrag inspect DATA.h5ad``: show what ptrag detects in a screen, before any training."""

from __future__ import annotations

import argparse
from typing import Any

from ptrag.cli.common import add_config_options, add_progress_option
from ptrag.config import DEFAULT_PRESET, DataConfig

__all__ = ["DESCRIPTION", "add_data_options", "add_parser", "data_config", "run"]

DESCRIPTION = (
    "Load a perturbation screen (.h5ad) the way training would and print what was detected: cells and "
    "genes, the expression source, cell types, perturbations and control cells per cell type (and per "
    "batch), the obs columns and control label used, and any warnings."
)


def add_data_options(parser: argparse.ArgumentParser) -> None:
    """Column/label overrides shared by the data commands."""
    parser.add_argument("data", metavar="DATA.h5ad", help="The screen to read (AnnData .h5ad).")
    parser.add_argument(
        "--perturbation-column",
        help="obs column holding the perturbation (target gene). Default: detect gene, target_gene, "
        "perturbation or condition.",
    )
    parser.add_argument(
        "--cell-type-column",
        help="obs column holding the cell type. Default: detect cell_line, cell_type or celltype.",
    )
    parser.add_argument(
        "--batch-column", help="obs column holding the batch. Default: detect gem_group or batch (optional)."
    )
    parser.add_argument(
        "--control-label",
        help="Label of control cells in the perturbation column. "
        "Default: detect non-targeting, control, ctrl or NT.",
    )
    defaults = DataConfig()
    parser.add_argument(
        "--expression",
        help="Expression to read: auto (obsm['X_hvg'] if present, else X), X, an obsm key, or layers/<key> "
        f"(default: {defaults.expression}).",
    )
    parser.add_argument(
        "--n-top-genes",
        type=int,
        help=f"Highly variable genes to keep when the data are raw counts (default: {defaults.n_top_genes}).",
    )


def training_config(args: argparse.Namespace) -> Any:
    """The config ``ptrag train`` would use with these options: --config (default preset), --set,
    then the data options given (range-checked like any config)."""
    from ptrag.cli.common import data_overrides
    from ptrag.config import load_config

    source = getattr(args, "config", None) or DEFAULT_PRESET
    return load_config(source, [*getattr(args, "overrides", []), *data_overrides(args)])


def data_config(args: argparse.Namespace) -> DataConfig:
    """The data section of :func:`training_config`."""
    return training_config(args).data


def add_parser(sub: Any, name: str, help_text: str) -> None:
    parser = sub.add_parser(name, help=help_text, description=DESCRIPTION)
    add_data_options(parser)
    add_config_options(parser)
    parser.add_argument(
        "--set-len",
        type=int,
        default=None,
        help="Set size S used to warn about perturbations and batches with fewer cells (default: "
        f"train.cell_set_len of the config training would use: --config and --set, else {DEFAULT_PRESET}).",
    )
    parser.add_argument(
        "--per-batch", action="store_true", help="Print control cells for every (cell type, batch) pair."
    )
    add_progress_option(parser)
    parser.set_defaults(func=run)


def _row(values: list[str], widths: list[int]) -> str:
    return "  ".join(
        v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(values, widths, strict=True))
    )


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return [_row(header, widths), _row(["-" * w for w in widths], widths)] + [_row(r, widths) for r in rows]


def summarize(dataset: Any, set_len: int, per_batch: bool = False) -> str:
    """The human-readable report printed by ``ptrag inspect`` (also used by tests)."""
    from ptrag.data.dataset import BATCH, CELL_TYPE, PERTURBATION

    obs, mapping = dataset.obs, dataset.columns
    control = dataset.is_control
    lines = [
        f"File:        {dataset.source}",
        f"Cells:       {dataset.n_cells}",
        f"Genes:       {dataset.n_genes} (expression: {dataset.expression_source}, "
        f"{dataset.expression.nbytes / 2**20:.1f} MiB in memory)",
        f"Normalised:  {dataset.normalisation.describe()}",
        f"Columns:     perturbation={mapping.perturbation!r}  cell type={mapping.cell_type!r}  "
        f"batch={mapping.batch!r}" + ("" if mapping.batch else " (none: one batch)"),
        f"Control:     {mapping.control_label!r} ({int(control.sum())} cells)",
        f"Cell types:  {len(dataset.cell_types)} ({', '.join(dataset.cell_types)})",
        "",
    ]
    batch_counts = obs[control].groupby([CELL_TYPE, BATCH], observed=True).size()
    rows = []
    for cell_type in dataset.cell_types:
        in_type = (obs[CELL_TYPE] == cell_type).to_numpy()
        per_type = batch_counts[cell_type] if cell_type in batch_counts.index.get_level_values(0) else None
        n_batches = int((obs[BATCH][in_type]).nunique())
        pert_counts = obs[in_type & ~control].groupby(PERTURBATION, observed=True).size()
        values = per_type.to_numpy() if per_type is not None else [0]
        rows.append(
            [
                cell_type,
                str(int(in_type.sum())),
                str(len(pert_counts)),
                f"{int(pert_counts.median()) if len(pert_counts) else 0}",
                str(int((in_type & control).sum())),
                str(n_batches),
                f"{min(values)}/{int(sorted(values)[len(values) // 2])}/{max(values)}",
                str(int(sum(v < set_len for v in values))),
            ]
        )
    header = ["cell type", "cells", "perturbations", "median cells/pert", "controls", "batches",
              "controls/batch min/med/max", f"batches <{set_len} ctrl"]  # fmt: skip
    lines += _table(header, rows)
    if per_batch:
        lines += ["", "Control cells per (cell type, batch):"]
        lines += _table(
            ["cell type", "batch", "controls"],
            [[str(c), str(b), str(n)] for (c, b), n in batch_counts.items()],
        )
    lines += ["", "Warnings:" if dataset.warnings else "Warnings:    none"]
    lines += [f"  - {w}" for w in dataset.warnings]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    import logging

    from ptrag.data.loading import load_dataset

    config = training_config(args)
    set_len = args.set_len if args.set_len is not None else config.train.cell_set_len
    # The summary lists the warnings itself; logging them as well would print each twice.
    logger = logging.getLogger("ptrag.data.loading")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        dataset = load_dataset(args.data, config.data, set_len=set_len)
    finally:
        logger.setLevel(level)
    print(summarize(dataset, set_len, args.per_batch))
    return 0
