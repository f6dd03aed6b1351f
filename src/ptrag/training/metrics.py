"""metrics.csv: one row per logged step, kept across resumes.

Columns: the training losses, selection rate, kept candidates per set and step time (logged every
few steps); at each validation the validation loss, the best validation loss so far and its step;
and ``stopped`` ("early" or "max_steps") on the step where training ended. A resumed run first
drops the rows after its checkpoint step, which it is about to compute again, and keeps the rest.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping
from pathlib import Path

from ptrag.io import atomic_write_text, output_error

__all__ = ["COLUMNS", "MetricsLog"]

COLUMNS = (
    "step",
    "train/loss",
    "train/distribution_loss",
    "train/sparsity_loss",
    "train/selection_rate",
    "train/kept_per_set",
    "train/step_time_s",
    "val/loss",
    "val/selection_rate",
    "val/best_loss",
    "val/best_step",
    "stopped",
)


def _cell(value: object) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return repr(value) if isinstance(value, float) else str(value)


class MetricsLog:
    def __init__(self, path: Path) -> None:
        self.path = path

    def keep_until(self, step: int) -> None:
        """Start (or resume) the log: keep the rows up to ``step``, drop later ones."""
        rows: list[list[str]] = []
        if self.path.is_file():
            with self.path.open(newline="") as handle:
                reader = csv.reader(handle)
                header = next(reader, None)
                if header is not None and tuple(header) == COLUMNS:
                    rows = [row for row in reader if row and int(row[0]) <= step]
        text = ",".join(COLUMNS) + "\n" + "".join(",".join(row) + "\n" for row in rows)
        atomic_write_text(self.path, text)

    def append(self, row: Mapping[str, object]) -> None:
        unknown = set(row) - set(COLUMNS)
        if unknown:
            raise ValueError(f"unknown metrics columns {sorted(unknown)}")
        try:
            with self.path.open("a", newline="") as handle:
                csv.writer(handle).writerow([_cell(row.get(column)) for column in COLUMNS])
        except OSError as exc:
            raise output_error(exc, self.path) from exc
