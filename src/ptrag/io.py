"""Safe output: atomic writes, staged output directories, and nothing silently overwritten.

Files are written to a temporary name and renamed (``atomic_path``). Directories are written into a
staging directory beside the output and moved into place only when complete (``staged_output``):
a failed or killed command leaves the previous output as it was.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from ptrag.errors import OutputError

__all__ = [
    "atomic_path",
    "atomic_save",
    "atomic_write_bytes",
    "atomic_write_text",
    "check_free_space",
    "check_output_dir",
    "h5ad_strings",
    "output_error",
    "prepare_output_dir",
    "replace_dir",
    "staged_output",
]


def output_error(exc: OSError, path: Path) -> OutputError:
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
        raise output_error(exc, target) from exc
    tmp = Path(tmp_name)
    try:
        yield tmp
        if tmp.exists():
            # mkstemp creates 0600 files; give the result the permissions a plain open() would.
            tmp.chmod(0o666 & ~_umask())
        os.replace(tmp, target)
    except OSError as exc:
        raise output_error(exc, target) from exc
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


def check_output_dir(path: str | Path, overwrite: bool = False) -> Path:
    """Refuse, before any work, an output path that is a file, or a non-empty directory without overwrite."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise OutputError(f"Output path {out} exists and is not a directory.")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise OutputError(
            f"Output directory {out} already exists and is not empty. "
            "Pass --overwrite to replace it, or choose another --out."
        )
    return out


def check_free_space(path: str | Path, needed: int, what: str) -> None:
    """Refuse, before any work, an output of about ``needed`` bytes that the device of ``path``
    (the nearest existing directory) has no room for. An output replaced with --overwrite stays until
    the new one is complete, so the new one needs its full size free."""
    out = Path(path).absolute()
    existing = next((p for p in (out, *out.parents) if p.exists()), out.anchor)
    try:
        free = shutil.disk_usage(existing).free
    except OSError:  # no usage to read (an exotic file system): the write itself will tell
        return
    if needed > free:
        kept = " (the old output stays until the new one is complete)" if out.exists() else ""
        raise OutputError(
            f"Not enough space for {path}: {what} needs about {_size(needed)}, but its device has "
            f"{_size(free)} free{kept}. Free space or choose --out elsewhere."
        )


def _size(n_bytes: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if n_bytes < 1000 or unit == "GB":
            return f"{n_bytes:.0f} {unit}" if unit == "bytes" else f"{n_bytes:.1f} {unit}"
        n_bytes /= 1000
    raise AssertionError  # unreachable


def replace_dir(new: Path, out: Path) -> None:
    """Move the complete directory ``new`` to ``out``; an old ``out`` is removed only after that."""
    try:
        if not out.exists():
            os.rename(new, out)
            return
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        os.rename(out, old / out.name)
        try:
            os.rename(new, out)
        except OSError:
            os.rename(old / out.name, out)
            raise
        shutil.rmtree(old, ignore_errors=True)
    except OSError as exc:
        raise output_error(exc, out) from exc


def make_dir(path: Path) -> Path:
    """Create a directory (and its parents) with the permissions a plain mkdir would give."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        path.chmod(0o777 & ~_umask())
    except OSError as exc:
        raise output_error(exc, path) from exc
    return path


@contextlib.contextmanager
def staged_output(path: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield an empty staging directory beside ``path``; it replaces ``path`` if the block succeeds.

    The checks (an existing file, a non-empty directory without ``overwrite``) run before the block.
    On any failure the staging directory is removed and ``path`` is left as it was.
    """
    out = check_output_dir(path, overwrite)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.staging-", dir=out.parent))
    except OSError as exc:
        raise output_error(exc, out) from exc
    try:
        make_dir(staging)
        yield staging
        replace_dir(staging, out)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def prepare_output_dir(path: str | Path, overwrite: bool = False) -> Path:
    """Create an output directory in place; refuse a non-empty one unless ``overwrite`` (which empties it).

    Commands use :func:`staged_output` instead, which keeps the old output until the new one is complete.
    """
    out = check_output_dir(path, overwrite)
    if out.exists() and any(out.iterdir()):
        shutil.rmtree(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".ptrag-write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise output_error(exc, out) from exc
    return out
