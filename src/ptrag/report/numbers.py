"""The report's number formats: every number the report prints goes through these."""

from __future__ import annotations

from typing import Any

__all__ = ["fmt", "fmt_cell", "percent", "signed"]

MINUS = "\u2212"  # a minus sign, not a hyphen


def fmt(value: Any) -> str:
    """The one number format of the report (4 significant digits; NaN/None as 'n/a')."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    return f"{float(value):.4g}"


def fmt_cell(value: Any) -> str:
    """Strings as they are, numbers by :func:`fmt` (optional retrieval columns can be either)."""
    return value if isinstance(value, str) else fmt(value)


def percent(value: Any) -> str:
    """A share as a percentage with 3 significant digits ('n/a' for None)."""
    return "n/a" if value is None else f"{100 * float(value):.3g}%"


def signed(value: float) -> str:
    """A difference with its sign and 2 significant digits: "+0.012", "−0.047"."""
    return f"{value:+#.2g}".replace("-", MINUS)
