"""Progress reporting: the one home of every progress bar ptrag shows.

Progress goes to stderr, never stdout (stdout carries results). On a terminal it is a tqdm bar;
anywhere else (a log file, a pipe, a notebook) it is a plain line every ``PLAIN_INTERVAL_S``
seconds and one at the end, with no carriage returns. ``--no-progress`` (every command) and
``progress=False`` (``ptrag.Model``) turn it all off, the file-reading bar included, through
:func:`progress_enabled`.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, TextIO, TypeVar

__all__ = ["Progress", "T", "progress_bar", "progress_enabled"]

T = TypeVar("T")

# Seconds between two plain progress lines when stderr is not a terminal.
PLAIN_INTERVAL_S = 30.0

_enabled = True


@contextlib.contextmanager
def progress_enabled(enabled: bool) -> Iterator[None]:
    """Within the block, show progress only if ``enabled`` (and no outer block turned it off)."""
    global _enabled
    previous = _enabled
    _enabled = previous and enabled
    try:
        yield
    finally:
        _enabled = previous


def _is_terminal(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


class Progress:
    """A progress report: ``update(n)``, ``set_postfix(**values)``, ``close()``; also a context
    manager, and iterable when made over an iterable."""

    def __init__(
        self, iterable: Iterable[Any] | None, total: int | None, desc: str, unit: str, enabled: bool
    ) -> None:
        self._iterable = iterable
        self.total = total if total is not None or iterable is None else _length(iterable)
        self.desc, self.unit = desc, unit
        self.n = 0
        self._postfix: dict[str, Any] = {}
        self._bar: Any = None
        self._shown = enabled and _enabled
        self._plain = self._shown and not _is_terminal(sys.stderr)
        self._start = self._last = time.monotonic()
        self._closed = False
        if self._shown and not self._plain:
            from tqdm import tqdm

            self._bar = tqdm(total=self.total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True)

    def update(self, n: int = 1) -> None:
        self.n += n
        if self._bar is not None:
            self._bar.update(n)
        elif self._plain and time.monotonic() - self._last >= PLAIN_INTERVAL_S:
            self._line()

    def set_postfix(self, **values: Any) -> None:
        self._postfix = values
        if self._bar is not None:
            self._bar.set_postfix(values, refresh=False)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._bar is not None:
            self._bar.close()
        elif self._plain:
            self._line()

    def _line(self) -> None:
        self._last = time.monotonic()
        done = f"{self.n}/{self.total}" if self.total else str(self.n)
        share = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
        extra = "".join(f", {k}={_fmt(v)}" for k, v in self._postfix.items())
        elapsed = self._last - self._start
        print(f"{self.desc}: {done} {self.unit}{share}, {elapsed:.0f} s{extra}", file=sys.stderr, flush=True)

    def __iter__(self) -> Iterator[Any]:
        assert self._iterable is not None, "Progress made without an iterable"
        try:
            for item in self._iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _length(iterable: Iterable[Any]) -> int | None:
    try:
        return len(iterable)  # type: ignore[arg-type]
    except TypeError:
        return None


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def progress_bar(
    iterable: Iterable[T] | None = None,
    *,
    total: int | None = None,
    desc: str,
    unit: str = "it",
    enabled: bool = True,
) -> Progress:
    """A progress report over ``iterable`` (or ``total`` steps); silent unless ``enabled`` and
    progress is on (see :func:`progress_enabled`)."""
    return Progress(iterable, total, desc, unit, enabled)
