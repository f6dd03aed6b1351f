"""Command lines and the one-error-line check shared by the CLI tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from ptrag.cli.main import main

from .hints import assert_hint_flags_exist

TINY_MODEL = (
    "--steps",
    "5",
    "--no-progress",
    "--set",
    "model.hidden_dim=16",
    "--set",
    "model.n_layers=1",
    "--set",
    "train.num_threads=1",
    "--set",
    "train.cell_set_len=16",
    "--set",
    "train.val_every=1000",
)


def fails(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    """Run ``ptrag argv``; check exit 2, no traceback and exactly one error line; return that line."""
    status = main(argv)
    err = capsys.readouterr().err
    assert status == 2, err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith(f"ptrag {argv[0]}: error: ")]
    assert len(errors) == 1, err
    assert_hint_flags_exist(argv[0], errors[0])
    return errors[0]


def train_args(
    screen: Path, data: Path | None = None, split: Path | None = None, out: str = "r"
) -> list[str]:
    return [
        "train",
        str(data or screen / "data.h5ad"),
        "--split",
        str(split or screen / "split.toml"),
        "--out",
        str(screen.parent / out),
        *TINY_MODEL,
    ]


def predict_args(run: Path, data: Path, out: Path, *extra: str) -> list[str]:
    return ["predict", str(run), "--data", str(data), "--out", str(out), "--no-progress", *extra]


def snapshot(path: Path) -> dict[str, bytes]:
    """Every file under ``path`` (or the file itself) with its bytes."""
    if path.is_file():
        return {path.name: path.read_bytes()}
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}
