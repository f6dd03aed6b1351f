import errno
import os
import tempfile

import pytest

from ptrag.errors import OutputError
from ptrag.io import atomic_path, atomic_write_text, check_free_space, prepare_output_dir


def test_existing_output_directory_is_refused_without_overwrite(tmp_path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(OutputError, match="--overwrite"):
        prepare_output_dir(out)
    assert (out / "keep.txt").read_text() == "x"
    prepare_output_dir(out, overwrite=True)
    assert list(out.iterdir()) == []


def test_failed_write_leaves_the_previous_file_and_no_temporary(tmp_path) -> None:
    target = tmp_path / "a.txt"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("partial")
        raise RuntimeError("crash mid-write")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


def test_full_disk_is_a_clear_error_and_leaves_no_partial_file(tmp_path, monkeypatch) -> None:
    def no_space(*_args: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", no_space)
    with pytest.raises(OutputError, match="No space left"):
        atomic_write_text(tmp_path / "big.txt", "data")
    assert list(tmp_path.iterdir()) == []


def test_read_only_filesystem_is_a_clear_error(tmp_path, monkeypatch) -> None:
    def read_only(*_args: object, **_kwargs: object) -> None:
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    with pytest.raises(OutputError, match=r"Read-only file system.*writable"):
        atomic_write_text(tmp_path / "x.txt", "data")


def test_unwritable_location_is_a_clear_error(tmp_path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(OutputError):
        atomic_write_text(blocker / "x.txt", "data")


def test_free_space_is_checked_for_the_known_output_size(tmp_path, monkeypatch) -> None:
    import shutil

    usage = shutil.disk_usage(tmp_path)
    seen = []

    def disk_usage(path):
        seen.append(path)
        return usage._replace(free=2_500_000_000)

    monkeypatch.setattr(shutil, "disk_usage", disk_usage)
    out = tmp_path / "not" / "yet" / "there"
    check_free_space(out, 2_000_000_000, "the screen")  # fits
    assert seen == [tmp_path]  # the nearest directory that exists
    with pytest.raises(OutputError) as info:
        check_free_space(out, 3_000_000_000, "the screen")
    assert str(info.value) == (
        f"Not enough space for {out}: the screen needs about 3.0 GB, but its device has 2.5 GB free. "
        "Free space or choose --out elsewhere."
    )
