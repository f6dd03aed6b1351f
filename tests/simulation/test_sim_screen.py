"""The written screen: schema, knock-down, split, determinism (tiny preset, real gene table)."""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import pytest
import scanpy as sc

from ptrag.data.splits import Split
from ptrag.embeddings.bundled import load_gene_table
from ptrag.errors import ConfigError, OutputError
from ptrag.simulation import SimulationResult, get_preset, simulate

CONTROL = "non-targeting"


@pytest.fixture(scope="module")
def adata(tiny_screen: SimulationResult) -> ad.AnnData:
    return ad.read_h5ad(tiny_screen.data_path)


def test_schema(adata: ad.AnnData, tiny_screen: SimulationResult) -> None:
    preset = get_preset("tiny")
    assert list(adata.obs.columns) == ["gene", "cell_line", "gem_group"]
    assert adata.n_vars == preset.n_measured_genes
    assert set(adata.obs["cell_line"]) == set(preset.cell_lines)
    for line in preset.cell_lines:
        in_line = adata.obs[adata.obs["cell_line"] == line]
        share = (in_line["gene"] == CONTROL).mean()
        assert 0.08 < share < 0.2, f"{line}: control share {share:.2f}"
        # every gem group of a line holds controls, and no gem group is shared between lines
        assert in_line.loc[in_line["gene"] == CONTROL, "gem_group"].nunique() == preset.n_batches_per_line
    groups = adata.obs.groupby("gem_group", observed=True)["cell_line"].nunique()
    assert (groups == 1).all()
    sizes = adata.obs[adata.obs["gene"] != CONTROL].groupby(["cell_line", "gene"], observed=True).size()
    assert sizes.min() >= preset.cells_per_perturbation[0] and sizes.max() <= preset.cells_per_perturbation[1]
    assert adata.obs_names.is_unique and adata.var_names.is_unique
    uns = adata.uns["ptrag_simulation"]
    assert (uns["preset"], int(uns["seed"])) == ("tiny", 0)


def test_counts_and_normalisation(adata: ad.AnnData) -> None:
    counts = adata.layers["counts"]
    assert np.issubdtype(counts.dtype, np.integer) and counts.format == "csr"
    assert counts.min() >= 0
    expected = ad.AnnData(counts.astype(np.float32))
    sc.pp.normalize_total(expected, target_sum=1e4)
    sc.pp.log1p(expected)
    assert adata.X.format == "csr" and adata.X.dtype == np.float32
    np.testing.assert_allclose(adata.X.toarray(), expected.X.toarray(), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(adata.obsm["X_hvg"], adata.X.toarray())
    assert adata.obsm["X_hvg"].dtype == np.float32
    library = np.asarray(counts.sum(axis=1)).ravel()
    sparsity = 1 - counts.nnz / np.prod(counts.shape)
    assert 0.25 < sparsity < 0.85, sparsity
    assert library.std() / library.mean() > 0.25  # log-normal library sizes, not constant


def test_genes_are_real_symbols(adata: ad.AnnData, tiny_screen: SimulationResult) -> None:
    table = load_gene_table()
    symbols = set(table["symbol"])
    assert set(adata.var_names) <= symbols
    targets = set(adata.obs["gene"]) - {CONTROL}
    assert targets <= symbols
    category = dict(zip(table["symbol"], table["category"], strict=True))
    families = {category[t] for t in targets} - {"other", "background"}
    assert len(families) >= 3
    measured_targets = targets & set(adata.var_names)
    assert len(measured_targets) >= 0.4 * len(targets)


def test_knockdown_of_measured_targets(adata: ad.AnnData, tiny_screen: SimulationResult) -> None:
    conditions = pd.read_csv(tiny_screen.conditions_path)
    assert conditions["knockdown"].between(0.7, 0.95).all()
    counts = adata.layers["counts"].toarray().astype(np.float64)
    normalised = counts / counts.sum(1, keepdims=True) * 1e4
    obs = adata.obs
    observed = []
    for row in conditions[conditions["target_measured"]].itertuples():
        g = adata.var_names.get_loc(row.perturbation)
        line = (obs["cell_line"] == row.cell_line).to_numpy()
        is_ctrl = line & (obs["gene"] == CONTROL).to_numpy()
        ctrl = normalised[is_ctrl, g].mean()
        pert = normalised[line & (obs["gene"] == row.perturbation).to_numpy(), g].mean()
        # Only targets with >= 2 UMIs per control cell: below that, 35 cells cannot resolve 70-95%.
        if counts[is_ctrl, g].mean() >= 2.0:
            observed.append(1 - pert / ctrl)
    observed = np.asarray(observed)
    assert len(observed) >= 10
    assert 0.7 <= np.median(observed) <= 0.95
    assert np.mean((observed > 0.6) & (observed < 0.98)) > 0.9, observed


def test_split_is_fewshot_per_line(tiny_screen: SimulationResult, adata: ad.AnnData) -> None:
    split = Split.read(tiny_screen.split_path)
    preset = get_preset("tiny")
    assert set(split.fewshot) == set(preset.cell_lines)
    obs = adata.obs
    seen_in_other_line_train = 0
    for line, lists in split.fewshot.items():
        line_perts = set(obs.loc[obs["cell_line"] == line, "gene"]) - {CONTROL}
        held_out = set(lists["val"]) | set(lists["test"])
        assert held_out <= line_perts and CONTROL not in held_out
        assert not set(lists["val"]) & set(lists["test"])
        assert abs(len(lists["test"]) - 0.25 * len(line_perts)) <= 1
        assert abs(len(lists["val"]) - 0.15 * len(line_perts)) <= 1
        for other in set(preset.cell_lines) - {line}:
            other_perts = set(obs.loc[obs["cell_line"] == other, "gene"])
            seen_in_other_line_train += sum(
                1 for p in held_out if p in other_perts and split.role(other, p) == "train"
            )
    assert seen_in_other_line_train > 0


def test_unseen_split_holds_perturbations_out_of_every_line(tiny_screen: SimulationResult) -> None:
    from ptrag.data.loading import load_dataset
    from ptrag.data.splits import generate_unseen

    split = Split.read(tiny_screen.unseen_split_path)
    dataset = load_dataset(tiny_screen.data_path)
    split.validate(dataset)
    preset = get_preset("tiny")
    perts = dataset.perturbations()
    test = {p for lists in split.fewshot.values() for p in lists["test"]}
    val = {p for lists in split.fewshot.values() for p in lists["val"]}
    assert len(test) == round(0.25 * len(perts)) and len(val) == round(0.15 * len(perts))
    assert not test & val
    for line in preset.cell_lines:  # a held-out perturbation trains in no line
        assert not (test | val) & {p for c, p in split.groups(dataset, "train") if c == line}
        assert set(split.fewshot[line]["test"]) == test & set(dataset.perturbations(line))
    # The same lists as `ptrag split --mode unseen` on the written file with the simulation's seed.
    expected = generate_unseen(dataset, preset.val_fraction, preset.test_fraction, 0, name="simulated")
    assert split.fewshot == expected.fewshot
    roles = pd.read_csv(tiny_screen.conditions_path).set_index(["cell_line", "perturbation"])["split_unseen"]
    assert {p for (_, p), role in roles.items() if role == "test"} == test


def test_truth_layout(tiny_screen: SimulationResult, adata: ad.AnnData) -> None:
    truth = pd.read_parquet(tiny_screen.truth_path)
    assert list(truth.columns[:2]) == ["cell_line", "perturbation"]
    assert list(truth.columns[2:]) == list(adata.var_names)
    pairs = set(zip(truth["cell_line"], truth["perturbation"], strict=True))
    observed = set(adata.obs.loc[adata.obs["gene"] != CONTROL, ["cell_line", "gene"]].itertuples(index=False))
    assert pairs == {tuple(map(str, p)) for p in observed}
    # The observed mean shift follows the truth for the strongest perturbations.
    X = adata.X.toarray()
    strongest = truth.iloc[np.argsort(-np.abs(truth.iloc[:, 2:].to_numpy()).sum(1))[:5]]
    for row in strongest.itertuples(index=False):
        line = (adata.obs["cell_line"] == row.cell_line).to_numpy()
        pert = X[line & (adata.obs["gene"] == row.perturbation).to_numpy()].mean(0)
        ctrl = X[line & (adata.obs["gene"] == CONTROL).to_numpy()].mean(0)
        assert np.corrcoef(pert - ctrl, np.asarray(row[2:], dtype=float))[0, 1] > 0.7


def test_same_seed_same_files(tiny_screen: SimulationResult, tiny_screen_again: Path) -> None:
    for name in ("split.toml", "split_unseen.toml", "perturbations.csv"):
        assert (tiny_screen.out_dir / name).read_text() == (tiny_screen_again / name).read_text()
    pd.testing.assert_frame_equal(
        pd.read_parquet(tiny_screen.truth_path), pd.read_parquet(tiny_screen_again / "truth.parquet")
    )
    with h5py.File(tiny_screen.data_path) as a, h5py.File(tiny_screen_again / "data.h5ad") as b:
        for key in ("layers/counts/data", "layers/counts/indices", "X/data", "obsm/X_hvg"):
            np.testing.assert_array_equal(a[key][...], b[key][...])


def test_other_seed_differs(tmp_path: Path, tiny_screen: SimulationResult) -> None:
    other = simulate("tiny", 1, tmp_path / "seed1")
    assert (
        pd.read_csv(other.conditions_path)["perturbation"].tolist()
        != pd.read_csv(tiny_screen.conditions_path)["perturbation"].tolist()
    )


def test_refuses_non_empty_output_and_unknown_preset(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("x")
    with pytest.raises(OutputError, match="overwrite"):
        simulate("tiny", 0, tmp_path)
    with pytest.raises(ConfigError, match="replogle-like"):
        simulate("huge", 0, tmp_path / "new")


def test_ptrag_loader_reads_screen_and_split(tiny_screen: SimulationResult) -> None:
    """The files work with ptrag's own data layer as a user would use them."""
    from ptrag.data.loading import load_dataset

    dataset = load_dataset(tiny_screen.data_path)
    assert dataset.columns.control_label == CONTROL
    assert (dataset.columns.perturbation, dataset.columns.cell_type, dataset.columns.batch) == (
        "gene",
        "cell_line",
        "gem_group",
    )
    assert list(dataset.genes) == list(ad.read_h5ad(tiny_screen.data_path, backed="r").var_names)
    split = Split.read(tiny_screen.split_path)
    split.validate(dataset)
    roles = split.roles(dataset)
    assert {"train", "val", "test", "control"} <= set(roles)
