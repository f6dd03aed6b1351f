"""User-facing errors.

Every problem a user can fix (bad input, bad config, missing files) is raised as a subclass of
:class:`PtragError`. The CLI prints its message and exits with status 2, never a traceback.
"""

from __future__ import annotations

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DataError",
    "EmbeddingError",
    "OutputError",
    "PtragError",
    "SplitError",
    "TrainingError",
    "format_list",
]


class PtragError(Exception):
    """A problem the user can fix; the message says what is wrong and what to do."""


class DataError(PtragError):
    """The input data cannot be used as it is."""


class ConfigError(PtragError):
    """A configuration file, key or value is invalid."""


class SplitError(PtragError):
    """A split file is malformed or does not match the data."""


class EmbeddingError(PtragError):
    """Gene embeddings are missing, malformed or do not cover the perturbations."""


class CheckpointError(PtragError):
    """A run directory or checkpoint is missing, incomplete or corrupted."""


class OutputError(PtragError):
    """An output location cannot be written (exists, read-only, disk full)."""


class TrainingError(PtragError):
    """Training cannot continue (for example the loss became NaN)."""


def format_list(items: object, limit: int = 20) -> str:
    """Render a list for an error message, truncated with a count of what was left out."""
    values = [str(v) for v in items]  # type: ignore[attr-defined]
    shown = ", ".join(repr(v) for v in values[:limit])
    if len(values) > limit:
        shown += f", … ({len(values) - limit} more)"
    return shown
