"""Safe output: atomic writes and output directories that are never silently overwritten."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from ptrag.errors import OutputError


def _explain(exc: OSError, path: Path) -> OutputError:
    if exc.errno == errno.ENOSPC:
        return OutputError(
            f"No space left on the device while writing {path}. Free space or choose --out elsewhere."
        )
    if exc.errno in (errno.EACCES, errno.EROFS, errno.EPERM):
        return OutputError(f"Cannot write {path}: {exc.strerror}. Choose a writable --out directory.")
    return OutputError(f"Cannot write {path}: {exc}")


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    A reader therefore sees either the old complete file or the new complete file, never a partial one.
    """
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        os.close(fd)
    except OSError as exc:
        raise _explain(exc, target) from exc
    tmp = Path(tmp_name)
    try:
        yield tmp
        if tmp.exists():
            # mkstemp creates 0600 files; give the result the permissions a plain open() would.
            tmp.chmod(0o666 & ~_umask())
        os.replace(tmp, target)
    except OSError as exc:
        raise _explain(exc, target) from exc
    finally:
        if tmp.exists():
            tmp.unlink()


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_save(path: str | Path, writer: Callable[[Path], None]) -> None:
    """Run ``writer(tmp_path)`` and move the result into place atomically."""
    with atomic_path(path) as tmp:
        writer(tmp)


@contextlib.contextmanager
def h5ad_strings() -> Iterator[None]:
    """Let anndata write pandas' string arrays (pandas ≥ 3 makes every str column and index one).

    anndata refuses them by default for compatibility with anndata < 0.11 readers; ptrag's own
    readers, and anndata ≥ 0.11, read them fine.
    """
    import anndata as ad

    if hasattr(ad.settings, "allow_write_nullable_strings"):
        with ad.settings.override(allow_write_nullable_strings=True):
            yield
    else:
        yield


def prepare_output_dir(path: str | Path, overwrite: bool = False) -> Path:
    """Create an output directory; refuse a non-empty existing one unless ``overwrite``."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise OutputError(f"Output path {out} exists and is not a directory.")
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise OutputError(
                f"Output directory {out} already exists and is not empty. "
                "Pass --overwrite to replace it, or choose another --out."
            )
        shutil.rmtree(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".ptrag-write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise _explain(exc, out) from exc
    return out
