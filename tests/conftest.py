"""Shared fixtures: tiny perturbation screens in the Replogle-Nadig schema, and the simulated ``tiny``
screen (simulated once per session for every test that trains or predicts)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import ClassVar

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


# The knockdown screen (ptrag.run.knockdown, ptrag.prediction.knockdown): which targets are measured
# genes, which of them train, and which cell type has too few measured targets of its own.
KNOCKDOWN_GENES = 40  # measured genes; the first KNOCKDOWN_IN_LIST of them are also targets
KNOCKDOWN_IN_LIST = 26
KNOCKDOWN_OFF_LIST = 4  # targets that are not measured genes
KNOCKDOWN_TEST = tuple(range(20, 26))  # in-list targets held out of every cell type (never measured)
KNOCKDOWN_VAL = (18, 19)
KNOCKDOWN_FEW = 6  # cell type "b" screens only the first 6 in-list targets (+ the off-list ones)


@dataclass(frozen=True)
class KnockdownScreen:
    """What :func:`make_knockdown_screen` built: the AnnData, its unseen split and the known truth."""

    adata: object  # anndata.AnnData
    split: object  # ptrag.data.splits.Split
    remaining: dict[str, float]  # "perturbation@cell type" -> the target's known remaining fraction
    in_list: tuple[str, ...]  # targets that are measured genes (in gene order)
    off_list: tuple[str, ...]  # targets that are not
    train: tuple[str, ...]  # in-list targets that train (in both cell types where screened)
    test: tuple[str, ...]  # in-list targets held out of every cell type: never measured
    val: tuple[str, ...]

    def write(self, out: Path) -> Path:
        """data.h5ad and split.toml in ``out``."""
        out.mkdir(parents=True, exist_ok=True)
        self.adata.write_h5ad(out / "data.h5ad")  # type: ignore[attr-defined]
        self.split.write(out / "split.toml")  # type: ignore[attr-defined]
        return out


def make_knockdown_screen(seed: int = 0) -> KnockdownScreen:
    """A log1p screen whose knockdowns are known: in perturbed cells the target's expression is a
    control-like value times R, the remaining fraction, drawn per (cell type, perturbation) from
    U(0.1, 0.3); genes 30-33 rise by 0.5 log1p in every perturbed cell. Gene levels span 0.5-20
    (expm1 units), so no single log1p drop fits every target. Cell type "a" screens every target,
    "b" only ``KNOCKDOWN_FEW`` in-list ones (too few for a prior of its own)."""
    import anndata as ad

    from ptrag.data.splits import Split
    from ptrag.embeddings import load_embeddings

    rng = np.random.default_rng(seed)
    symbols = list(load_embeddings("bundled").symbols[::97][: KNOCKDOWN_GENES + KNOCKDOWN_OFF_LIST])
    genes = symbols[:KNOCKDOWN_GENES]
    in_list, off_list = symbols[:KNOCKDOWN_IN_LIST], symbols[KNOCKDOWN_GENES:]
    level = rng.uniform(0.5, 20.0, size=KNOCKDOWN_GENES)
    screened = {"a": in_list + off_list, "b": in_list[:KNOCKDOWN_FEW] + off_list}
    blocks, obs, remaining = [], [], {}
    for cell_type, targets in screened.items():
        for target, n in [("non-targeting", 300), *[(t, 30) for t in targets]]:
            # Control-like expression: gamma with CV 0.22 around each gene's level.
            values = rng.gamma(20.0, level / 20.0, size=(n, KNOCKDOWN_GENES))
            if target != "non-targeting":
                values[:, 30:34] = np.expm1(np.log1p(values[:, 30:34]) + 0.5)
                if target in genes:
                    remaining[f"{target}@{cell_type}"] = fraction = float(rng.uniform(0.1, 0.3))
                    values[:, genes.index(target)] *= fraction
            blocks.append(np.log1p(values).astype(np.float32))
            obs += [(target, cell_type, f"{cell_type}_{i % 2}") for i in range(n)]
    frame = pd.DataFrame(obs, columns=["gene", "cell_line", "gem_group"]).astype("category")
    frame.index = [f"cell{i}" for i in range(len(frame))]
    adata = ad.AnnData(X=np.vstack(blocks), obs=frame, var=pd.DataFrame(index=genes))
    val = tuple(in_list[i] for i in KNOCKDOWN_VAL)
    test = tuple(in_list[i] for i in KNOCKDOWN_TEST)
    held_out = {"val": list(val), "test": [*test, *off_list[2:]]}
    fewshot = {
        c: {role: [p for p in ps if p in screened[c]] for role, ps in held_out.items()} for c in screened
    }
    split = Split(name="kd", fewshot=fewshot, datasets={"kd": "data.h5ad"}, training={"kd": "train"})
    train = tuple(p for p in in_list if p not in val + test)
    return KnockdownScreen(adata, split, remaining, tuple(in_list), tuple(off_list), train, test, val)


@pytest.fixture(scope="session")
def knockdown_screen() -> KnockdownScreen:
    """:func:`make_knockdown_screen`, built once per session."""
    return make_knockdown_screen()


@pytest.fixture(scope="session")
def knockdown_dir(knockdown_screen: KnockdownScreen, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The knockdown screen on disk: data.h5ad and split.toml."""
    return knockdown_screen.write(tmp_path_factory.mktemp("knockdown"))


@pytest.fixture
def knockdown_factory() -> Callable[..., KnockdownScreen]:
    return make_knockdown_screen


# The state screen (make_state_screen): one cell type whose responses depend on a visible basal state.
@dataclass(frozen=True)
class StateScreen:
    """What :func:`make_state_screen` built, and where its genes respond."""

    adata: object  # anndata.AnnData
    n_genes: ClassVar[int] = 60
    n_perturbations: ClassVar[int] = 14
    # Responds the other way round, three times as strongly: never a training group.
    held_out: ClassVar[str] = "P13"
    state_genes: ClassVar[slice] = slice(0, 5)  # higher in "high"-state cells: visible in the controls
    scaled_genes: ClassVar[slice] = slice(10, 30)  # respond 1.6x in high-state cells, 0.4x in low-state ones
    gated_genes: ClassVar[slice] = slice(30, 35)  # respond in low-state cells only (2x the mean), not in high

    @property
    def training(self) -> list[tuple[str, str]]:
        return [("a", f"P{j}") for j in range(self.n_perturbations) if f"P{j}" != self.held_out]


def make_state_screen(seed: int = 0) -> StateScreen:
    """One cell type, half its cells in a high basal state; every perturbation moves the scaled
    and gated genes by its own signed amounts, as the state dictates."""
    import anndata as ad

    layout = StateScreen(adata=None)
    rng = np.random.default_rng(seed)
    base = rng.uniform(2.5, 4.0, size=layout.n_genes)
    blocks, labels = [], []
    for target, n in [("non-targeting", 400), *[(f"P{j}", 60) for j in range(layout.n_perturbations)]]:
        high = rng.random(n) < 0.5
        values = base + rng.normal(0.0, 0.25, size=(n, layout.n_genes))
        values[high, layout.state_genes] += 1.5
        if target != "non-targeting":
            effect = rng.choice([-1.0, 1.0], size=layout.n_genes) * rng.uniform(0.3, 0.8, size=layout.n_genes)
            # The held-out group responds the other way round and three times as strongly: the
            # gains weigh groups by their squared shift, so read, it would pull every gain toward 1.
            reverse = target == layout.held_out
            if reverse:
                effect = 3.0 * np.abs(effect)
            strength = np.where(high != reverse, 1.6, 0.4)[:, None]
            values[:, layout.scaled_genes] += strength * effect[layout.scaled_genes]
            gate = np.where(high != reverse, 0.0, 2.0)[:, None]
            values[:, layout.gated_genes] += gate * effect[layout.gated_genes]
        blocks.append(values)
        labels += [target] * n
    obs = pd.DataFrame(
        {"gene": labels, "cell_line": "a", "gem_group": "a_0"}, index=[f"c{i}" for i in range(len(labels))]
    ).astype("category")
    var = pd.DataFrame(index=[f"g{j}" for j in range(layout.n_genes)])
    return replace(layout, adata=ad.AnnData(X=np.vstack(blocks).astype(np.float32), obs=obs, var=var))


@pytest.fixture(scope="session")
def state_screen() -> StateScreen:
    return make_state_screen()
