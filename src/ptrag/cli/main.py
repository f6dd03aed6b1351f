"""Entry point: ``ptrag <command> [options]``.

Each subcommand lives in ``ptrag.cli.<module>`` and exposes ``add_parser(subparsers)`` and
``run(args) -> int``. Modules are imported when their command runs, so ``ptrag --help`` is fast.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import sys
from collections.abc import Sequence

from ptrag import __version__
from ptrag.errors import PtragError
from ptrag.progress import progress_enabled

__all__ = ["main"]

# (command, module, one-line help)
COMMANDS: tuple[tuple[str, str, str], ...] = (
    ("inspect", "inspect_cmd", "Show what ptrag detects in a perturbation screen (.h5ad)."),
    ("split", "split_cmd", "Generate a few-shot, unseen or zero-shot split and write it as STATE TOML."),
    ("embed-genes", "embed_cmd", "Build GenePT-style gene embeddings offline, or show a gene's neighbours."),
    ("simulate", "simulate_cmd", "Write a simulated Replogle-like CRISPRi screen (the offline benchmark)."),
    ("train", "train_cmd", "Train an arm (ST, vanilla RAG, PT-RAG, the evidence memory, …) on a screen."),
    ("predict", "predict_cmd", "Predict perturbed cells from a trained run directory."),
    ("screen", "screen_cmd", "Rank the predicted knockdown of many genes (default: all) in one cell type."),
    ("memory", "memory_cmd", "Grow a trained run's evidence memory with new measurements (no retraining)."),
    ("evaluate", "evaluate_cmd", "Score predictions against real cells (cell-eval files and metrics)."),
    ("benchmark", "benchmark_cmd", "Train, predict and evaluate every arm with references; write a report."),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ptrag",
        description="Predict single-cell responses to CRISPRi perturbations with retrieval-augmented models.",
    )
    parser.add_argument("--version", action="version", version=f"ptrag {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="Show debug logging.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module, help_text in COMMANDS:
        mod = importlib.import_module(f"ptrag.cli.{module}")
        mod.add_parser(sub, name, help_text)
    return parser


def _os_error(exc: OSError) -> str:
    """One line for an OS error no command turned into a PtragError (a file vanished, a disk filled)."""
    where = f" ({exc.filename})" if exc.filename else ""
    if exc.errno == errno.ENOSPC:
        return f"No space left on the device{where}. Free space or choose --out elsewhere."
    return f"{exc.strerror or exc}{where}."


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s: %(message)s",
    )
    if args.command is None:
        parser.print_help()
        return 0
    try:
        with progress_enabled(not getattr(args, "no_progress", False)):
            return int(args.func(args) or 0)
    except PtragError as exc:
        print(f"ptrag {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"ptrag {args.command}: error: {_os_error(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"ptrag {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
