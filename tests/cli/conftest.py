"""The tiny simulated screen, a 5-step run and variants of the screen that the CLI tests share."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import anndata as ad
import numpy as np
import pytest

from ptrag.cli.main import main

from .cli_helpers import TINY_MODEL


@pytest.fixture(scope="session")
def screen(tiny_screen: Path) -> Path:
    """The session's tiny screen; CLI tests write their variants and runs beside it."""
    return tiny_screen


@pytest.fixture(scope="session")
def run_dir(screen: Path) -> Path:
    run = screen.parent / "run"
    args = ["train", str(screen / "data.h5ad"), "--split", str(screen / "split.toml"), "--out", str(run)]
    assert main([*args, "--arm", "ptrag", *TINY_MODEL]) == 0
    return run


@pytest.fixture(scope="session")
def variant(screen: Path) -> Callable[..., Path]:
    """``variant(name, change)``: write a changed copy of the tiny screen and return its path.

    ``change(adata)`` edits the AnnData in place or returns a new one. ``plain=True`` first moves
    the expression into a dense X (no obsm['X_hvg'], no counts layer), so that genes can be renamed,
    dropped or reordered with var.
    """

    def write(name: str, change: Callable[[ad.AnnData], ad.AnnData | None], plain: bool = False) -> Path:
        path = screen.parent / f"{name}.h5ad"
        if path.exists():
            return path
        adata = ad.read_h5ad(screen / "data.h5ad")
        if plain:
            adata.X = np.asarray(adata.obsm.pop("X_hvg"), dtype=np.float32)
            del adata.layers["counts"]
        adata = change(adata) or adata
        adata.write_h5ad(path)
        return path

    return write
