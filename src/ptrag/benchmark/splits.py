"""The splits a benchmark runs: few-shot (``split.toml``) and unseen (``split_unseen.toml``).

A data directory offers a split when it holds that file; ``ptrag simulate`` writes both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ptrag.errors import DataError, format_list
from ptrag.simulation.api import DATA_FILE, SPLIT_FILE, UNSEEN_SPLIT_FILE

__all__ = ["BenchmarkSplit", "parse_splits", "resolve_splits"]


@dataclass(frozen=True)
class BenchmarkSplit:
    name: str  # the --splits value and the key in summary.json
    file: str  # its file in the data directory
    label: str  # how the report names it
    description: str
    mode: str  # the `ptrag split --mode` that makes such a file


BENCHMARK_SPLITS: dict[str, BenchmarkSplit] = {
    "fewshot": BenchmarkSplit(
        "fewshot",
        SPLIT_FILE,
        "few-shot",
        "Per cell type, a share of its perturbations is held out for test; the same perturbations may "
        "train in the other cell types.",
        "fewshot",
    ),
    "unseen": BenchmarkSplit(
        "unseen",
        UNSEEN_SPLIT_FILE,
        "unseen",
        "A share of the screen's perturbations is held out of every cell type: no cell of a test "
        "perturbation trains anywhere.",
        "unseen",
    ),
}


def parse_splits(text: str | None) -> list[str] | None:
    """``"fewshot,unseen"`` → names (checked); None or "" → None (every split the data offers)."""
    if not text:
        return None
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in BENCHMARK_SPLITS]
    if unknown or not names:
        raise DataError(
            f"--splits {text!r}: unknown split(s) {format_list(unknown)}; choose from "
            f"{format_list(list(BENCHMARK_SPLITS))}."
        )
    return list(dict.fromkeys(names))


def resolve_splits(
    data_dir: str | Path, requested: Sequence[str] | None = None
) -> list[tuple[BenchmarkSplit, Path]]:
    """The requested splits (default: every split whose file is in ``data_dir``) and their files."""
    data_dir = Path(data_dir)
    if not (data_dir / DATA_FILE).is_file():
        raise DataError(f"--data {data_dir} must hold {DATA_FILE}; it is missing.")
    chosen = []
    for name in requested if requested is not None else list(BENCHMARK_SPLITS):
        split = BENCHMARK_SPLITS[name]
        path = data_dir / split.file
        if path.is_file():
            chosen.append((split, path))
        elif requested is not None:
            raise DataError(
                f"--splits asks for the {split.label} split but {path} does not exist. Make it with "
                f"`ptrag split {data_dir / DATA_FILE} --mode {split.mode} --out {path}`, or drop "
                f"{name} from --splits."
            )
    if not chosen:
        raise DataError(
            f"--data {data_dir} must hold {DATA_FILE} and {SPLIT_FILE} (optionally {UNSEEN_SPLIT_FILE}); "
            f"{SPLIT_FILE} is missing."
        )
    return chosen
