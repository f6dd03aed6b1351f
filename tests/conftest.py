"""Shared fixtures: tiny perturbation screens in the Replogle-Nadig schema, and the simulated ``tiny``
screen (simulated once per session for every test that trains or predicts)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

SCREEN_CELL_LINES: tuple[str, ...] = ("hepg2", "jurkat", "k562", "rpe1")


def make_screen(
    cell_lines: Sequence[str] = SCREEN_CELL_LINES,
    n_perturbations: int = 6,
    cells_per_perturbation: int = 8,
    n_controls: int = 24,
    n_genes: int = 60,
    n_hvg: int | None = 40,
    n_batches: int = 2,
    raw_counts: bool = False,
    sparse: bool = False,
    control_label: str = "non-targeting",
    seed: int = 0,
):
    """A small AnnData in Arc's Replogle-Nadig schema.

    obs: ``gene`` (targets ``G0..``, control ``control_label``), ``cell_line``, ``gem_group``; var has
    a ``highly_variable`` flag and, when ``n_hvg`` is set, ``obsm["X_hvg"]`` holds those genes. X is
    log1p-normalised unless ``raw_counts``. Each line has ``n_perturbations`` targets (line i skips
    target ``G{i}`` so lines differ) and ``n_controls`` controls spread over ``n_batches`` gem groups.
    """
    import anndata as ad

    rng = np.random.default_rng(seed)
    genes, lines, batches = [], [], []
    for line_index, line in enumerate(cell_lines):
        targets = [f"G{k}" for k in range(n_perturbations + 1) if k != line_index % (n_perturbations + 1)]
        targets = targets[:n_perturbations]
        for target in targets:
            genes += [target] * cells_per_perturbation
        genes += [control_label] * n_controls
        n_line = n_perturbations * cells_per_perturbation + n_controls
        lines += [line] * n_line
        batches += [f"{line}_{b % n_batches}" for b in range(n_line)]
    n_cells = len(genes)
    counts = rng.poisson(rng.gamma(0.6, 2.0, size=n_genes), size=(n_cells, n_genes)).astype(np.float32)
    X = counts if raw_counts else np.log1p(counts / np.maximum(counts.sum(1, keepdims=True), 1) * 1e4)
    X = X.astype(np.float32)
    obs = pd.DataFrame(
        {
            "gene": pd.Categorical(genes),
            "cell_line": pd.Categorical(lines),
            "gem_group": pd.Categorical(batches),
        },
        index=[f"cell{i}" for i in range(n_cells)],
    )
    var = pd.DataFrame(index=[f"GENE{j}" for j in range(n_genes)])
    hvg = np.zeros(n_genes, dtype=bool)
    hvg[rng.choice(n_genes, size=min(n_genes, n_hvg or n_genes), replace=False)] = True
    var["highly_variable"] = hvg
    adata = ad.AnnData(X=sp.csr_matrix(X) if sparse else X, obs=obs, var=var)
    if n_hvg is not None:
        adata.obsm["X_hvg"] = X[:, hvg]
    return adata


@pytest.fixture
def screen_factory() -> Callable[..., object]:
    """The :func:`make_screen` factory, for tests that need a variant."""
    return make_screen


@pytest.fixture
def write_screen(tmp_path: Path) -> Callable[..., Path]:
    """Write ``make_screen(**kwargs)`` (or a given AnnData) to a fresh .h5ad and return its path."""
    counter = iter(range(10_000))

    def write(adata: object | None = None, **kwargs: object) -> Path:
        data = adata if adata is not None else make_screen(**kwargs)  # type: ignore[arg-type]
        path = tmp_path / f"screen{next(counter)}.h5ad"
        data.write_h5ad(path)  # type: ignore[union-attr]
        return path

    return write


@pytest.fixture
def screen_h5ad(write_screen: Callable[..., Path]) -> Path:
    """The default 4-line Replogle-schema screen on disk."""
    return write_screen()


@pytest.fixture(scope="session")
def tiny_screen(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from ptrag.simulation import simulate

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("tiny") / "screen"
    simulate("tiny", seed=0, out_dir=out)
    # The input's hash right after simulation, before any test reads it (see tiny_screen_digest).
    (out.parent / "data.sha256").write_text(hashlib.sha256((out / "data.h5ad").read_bytes()).hexdigest())
    return out


@pytest.fixture(scope="session")
def tiny_screen_digest(tiny_screen: Path) -> str:
    """The tiny screen's hash taken right after simulation, before anything read it."""
    return (tiny_screen.parent / "data.sha256").read_text()
