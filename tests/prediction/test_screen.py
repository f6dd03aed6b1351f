"""In-silico screens: every requested gene predicted from one shared control draw, ranked by effect."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import ptrag
from ptrag.errors import DataError
from ptrag.prediction.effect_interval import EffectInterval, calibrate_effect_interval
from ptrag.prediction.screen import low_evidence_cutoff, read_gene_list, screen_genes
from ptrag.run.layout import read_run_split
from ptrag.run.vocabulary import resolve_vocabulary

TINY_OVERRIDES = (
    "model.hidden_dim=16",
    "model.n_layers=1",
    "train.max_steps=5",
    "train.num_threads=1",
    "train.cell_set_len=16",
    "train.val_every=1000",
)
NEVER_MEASURED = ["MYC", "TP53", "GAPDH"]


@pytest.fixture(scope="module")
def memory_run(tiny_screen: Path, tmp_path_factory: pytest.TempPathFactory) -> ptrag.Model:
    model = ptrag.Model.from_config("cpu-small", TINY_OVERRIDES, arm="memory")
    run_dir = tmp_path_factory.mktemp("screen") / "run"
    return model.fit(tiny_screen / "data.h5ad", tiny_screen / "split.toml", run_dir, progress=False)


@pytest.fixture(scope="module")
def screened(memory_run: ptrag.Model, tiny_screen: Path):
    genes = [*NEVER_MEASURED, "PSMA4", "POLR2A"]
    return memory_run.screen(
        tiny_screen / "data.h5ad", "k562", genes, n_cells=40, keep_cells=True, progress=False
    )


def _anchor(tiny_screen: Path, cell_type: str, barcodes: Sequence[str]) -> np.ndarray:
    """The mean, over the control cells ``barcodes``, of their gem group's control mean in the
    file (every tiny gem group has more than MIN_BATCH_CONTROLS controls): what the run's batch
    anchor re-centres them on."""
    adata = ad.read_h5ad(tiny_screen / "data.h5ad")
    obs = adata.obs
    controls = ((obs["gene"] == "non-targeting") & (obs["cell_line"] == cell_type)).to_numpy()
    x = np.asarray(adata.obsm["X_hvg"], dtype=np.float64)
    groups = obs["gem_group"].astype(str)
    batch_mean = {b: x[controls & (groups == b).to_numpy()].mean(axis=0) for b in set(groups[controls])}
    return np.mean([batch_mean[b] for b in groups.loc[list(barcodes)]], axis=0)


def test_never_measured_genes_are_ranked_by_the_distance_of_their_pseudobulk_from_control(
    screened, memory_run, tiny_screen
) -> None:
    table, bulk, cells = screened.table, screened.pseudobulk, screened.cells
    assert set(NEVER_MEASURED) <= set(table["perturbation"])
    assert not table.set_index("perturbation").loc[NEVER_MEASURED, "measured_in_training"].any()
    assert table["rank"].tolist() == [1, 2, 3, 4, 5]
    assert np.all(np.diff(table["effect_size"].to_numpy()) <= 0)
    assert list(bulk.obs_names) == table["perturbation"].tolist()
    assert list(bulk.var_names) == list(memory_run.genes)
    # The pseudobulk is the mean of each gene's 40 predicted cells; the effect is its distance from
    # the cell type's control mean, recomputed here from the file.
    assert cells is not None and cells.n_obs == 5 * 40
    for gene in table["perturbation"]:
        mine = cells[cells.obs["target_gene"] == gene].X.mean(axis=0)
        np.testing.assert_allclose(bulk[gene].X.ravel(), mine, rtol=1e-5, atol=1e-5)
    # The delta is measured from what the shared draw was re-centred on (the run's batch anchor),
    # recomputed here from the file; ptrag holds expression as float16, so it differs by < 1e-3.
    assert memory_run.checkpoint.config.model.anchor == "batch_pool"
    draw = cells.obs.loc[cells.obs["target_gene"] == table["perturbation"].iloc[0], "control_barcode"]
    control = _anchor(tiny_screen, "k562", draw.astype(str).tolist())
    np.testing.assert_allclose(bulk.layers["delta"], bulk.X - control[None, :], atol=1e-3)
    effect = np.linalg.norm(bulk.X - control[None, :], axis=1)
    np.testing.assert_allclose(table["effect_size"], effect, rtol=1e-3)
    # Top responding genes are the largest |delta| of that gene's profile, with their sign.
    first = table.iloc[0]
    delta = bulk.layers["delta"][0]
    top = np.asarray(bulk.var_names)[np.argsort(-np.abs(delta))[:5]]
    assert [item.split(":")[0] for item in first["top_genes"].split(";")] == list(top)


def test_the_api_writes_every_file_the_command_does(screened, tmp_path) -> None:
    written = screened.write(tmp_path / "screen")
    names = sorted(p.name for p in written.iterdir())
    assert names == ["screen.csv", "screen.png", "screen_cells.h5ad", "screen_pseudobulk.h5ad"]
    assert (written / "screen.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = pd.read_csv(written / "screen.csv")
    assert list(table["perturbation"]) == list(screened.table["perturbation"])


def test_every_gene_starts_from_the_same_control_cells(screened, tiny_screen) -> None:
    cells = screened.cells
    draws = {
        gene: tuple(cells.obs.loc[cells.obs["target_gene"] == gene, "control_barcode"].astype(str))
        for gene in screened.table["perturbation"]
    }
    assert len(set(draws.values())) == 1
    source = ad.read_h5ad(tiny_screen / "data.h5ad", backed="r").obs.loc[list(next(iter(draws.values())))]
    assert (source["gene"] == "non-targeting").all() and (source["cell_line"] == "k562").all()


def test_nearest_measured_evidence_is_the_most_similar_other_training_perturbation(
    screened, memory_run
) -> None:
    checkpoint = memory_run.checkpoint
    database = checkpoint.spec.database
    table = screened.table.set_index("perturbation")
    # The run's gene vectors (text + GO priors), as training embedded its vocabulary.
    resolved = resolve_vocabulary(list(table.index), checkpoint.config, checkpoint.spec.prior_tables)
    row = {symbol: i for i, symbol in enumerate(resolved.genes)}
    for gene in table.index:
        query = resolved.matrix[row[gene]]
        cosines = database.embeddings @ (query / np.linalg.norm(query))
        names = np.asarray(database.perturbations)
        others = names != gene
        best = int(np.argmax(np.where(others, cosines, -np.inf)))
        assert table.loc[gene, "nearest_measured"] == names[best]
        assert table.loc[gene, "nearest_cosine"] == pytest.approx(cosines[best], abs=1e-5)
    assert table.loc["PSMA4", "measured_in_training"]  # a training perturbation: never its own neighbour
    assert table.loc["PSMA4", "nearest_measured"] != "PSMA4"
    assert "selection_rate" in table and table["selection_rate"].between(0, 1).all()


def test_low_evidence_flags_unmeasured_genes_below_the_cut_off(screened, memory_run, tiny_screen) -> None:
    database = memory_run.checkpoint.spec.database
    cutoff = low_evidence_cutoff(database)
    own = database.embeddings @ database.embeddings.T
    np.fill_diagonal(own, -np.inf)
    assert (own.max(axis=1) < cutoff).mean() == pytest.approx(0.05, abs=1.0 / len(database))
    table = screened.table
    expected = ~table["measured_in_training"] & (table["nearest_cosine"] < cutoff)
    assert table["low_evidence"].tolist() == expected.tolist()
    strict = memory_run.screen(
        tiny_screen / "data.h5ad", "k562", ["MYC", "PSMA4"], low_evidence_cosine=1.0, progress=False
    ).table.set_index("perturbation")
    assert strict.loc["MYC", "low_evidence"] and not strict.loc["PSMA4", "low_evidence"]


def test_the_same_seed_gives_identical_screens_and_another_seed_other_controls(
    memory_run, tiny_screen
) -> None:
    runs = [
        memory_run.screen(tiny_screen / "data.h5ad", "rpe1", ["MYC", "TP53"], seed=s, progress=False)
        for s in (3, 3, 4)
    ]
    assert runs[0].pseudobulk.X.tobytes() == runs[1].pseudobulk.X.tobytes()
    assert runs[0].pseudobulk.X.tobytes() != runs[2].pseudobulk.X.tobytes()


def test_gene_lists_from_files_commas_or_all(tmp_path) -> None:
    path = tmp_path / "genes.txt"
    path.write_text("# knockdowns\nMYC\nTP53  # tumour suppressor\n\nMYC\nGAPDH,PSMA4\n")
    assert read_gene_list(str(path)) == ["MYC", "TP53", "GAPDH", "PSMA4"]
    assert read_gene_list("MYC, TP53,MYC") == ["MYC", "TP53"]
    assert read_gene_list("all") is None
    with pytest.raises(DataError, match=r"missing\.txt does not exist"):
        read_gene_list(str(tmp_path / "missing.txt"))
    (tmp_path / "empty.txt").write_text("# nothing\n")
    with pytest.raises(DataError, match="lists no genes"):
        read_gene_list(str(tmp_path / "empty.txt"))


def test_unknown_cell_type_is_named_with_those_that_have_controls(memory_run, tiny_screen) -> None:
    with pytest.raises(DataError, match=r"'hela'.*Cell types with controls: 'k562', 'rpe1'"):
        memory_run.screen(tiny_screen / "data.h5ad", "hela", ["MYC"], progress=False)


def test_keeping_every_cell_of_a_huge_screen_is_refused_before_any_work(memory_run, tiny_screen) -> None:
    with pytest.raises(DataError, match="drop --cells"):
        memory_run.screen(tiny_screen / "data.h5ad", "k562", None, n_cells=100_000, keep_cells=True)


def test_a_raw_count_run_screens_and_predicts_from_a_controls_only_raw_file(
    tiny_screen, tmp_path, caplog
) -> None:
    """Trained on raw counts, the run reads a controls-only raw file with its own genes and
    normalisation: no gene re-selection, no "only control cells" warning."""
    adata = ad.read_h5ad(tiny_screen / "data.h5ad")
    raw = ad.AnnData(
        X=adata.layers["counts"].copy(), obs=adata.obs.copy(), var=pd.DataFrame(index=adata.var_names)
    )
    raw.write_h5ad(tmp_path / "raw.h5ad")
    controls = raw[(raw.obs["gene"] == "non-targeting").to_numpy()].copy()
    controls.write_h5ad(tmp_path / "controls.h5ad")

    overrides = (*TINY_OVERRIDES, "data.n_top_genes=120")
    model = ptrag.Model.from_config("cpu-small", overrides, arm="st")
    model.fit(tmp_path / "raw.h5ad", tiny_screen / "split.toml", tmp_path / "run", progress=False)
    assert model.checkpoint.spec.normalisation.kind == "counts"
    assert len(model.genes) == 120

    caplog.clear()  # training's own note on preprocessing raw counts is not the subject here
    with caplog.at_level(logging.WARNING):
        result = model.screen(tmp_path / "controls.h5ad", "k562", ["MYC", "TP53"], progress=False)
        queries = pd.DataFrame({"cell_type": ["rpe1"], "perturbation": ["GAPDH"], "n_cells": [10]})
        adata_pred, _ = model.predict(tmp_path / "controls.h5ad", queries=queries, progress=False)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
    assert list(result.pseudobulk.var_names) == list(model.genes) == list(adata_pred.var_names)
    assert adata_pred.n_obs == 10 and np.isfinite(adata_pred.X).all()
    assert np.isfinite(result.table["effect_size"]).all()


def test_one_gene_as_a_string_is_one_gene_and_a_bad_cut_off_is_refused(memory_run, tiny_screen) -> None:
    table = memory_run.screen(tiny_screen / "data.h5ad", "k562", "MYC", progress=False).table
    assert table["perturbation"].tolist() == ["MYC"]  # it used to be split into 'M', 'Y', 'C'
    for value in (float("nan"), 5.0):
        with pytest.raises(DataError, match="must be a cosine between -1 and 1"):
            memory_run.screen(tiny_screen / "data.h5ad", "k562", ["MYC"], low_evidence_cosine=value)


def test_effect_intervals_are_calibrated_on_the_runs_own_validation_groups(
    screened, memory_run, tiny_screen
) -> None:
    checkpoint = memory_run.checkpoint
    dataset = memory_run.load_data(tiny_screen / "data.h5ad")
    groups = read_run_split(memory_run.run_dir).groups(dataset, "val")
    # Observed effects by hand from the file: the squared norm of the group mean minus the cell
    # type's control mean, less both means' sampling variances.
    adata = ad.read_h5ad(tiny_screen / "data.h5ad")
    observed, predicted = [], []
    for cell_type, gene in groups:
        cells = ((adata.obs["gene"] == gene) & (adata.obs["cell_line"] == cell_type)).to_numpy()
        controls = ((adata.obs["gene"] == "non-targeting") & (adata.obs["cell_line"] == cell_type)).to_numpy()
        group, pool = (np.asarray(adata.obsm["X_hvg"][m], np.float64) for m in (cells, controls))
        shift = group.mean(axis=0) - pool.mean(axis=0)
        noise = group.var(axis=0, ddof=1).sum() / len(group) + pool.var(axis=0, ddof=1).sum() / len(pool)
        observed.append(np.sqrt(max(shift @ shift - noise, 1e-12)))
        screen = screen_genes(
            checkpoint, dataset, cell_type, [gene], n_cells=40, intervals=False, progress=False
        )
        predicted.append(screen.table["effect_size"].iloc[0])
    # tiny holds 10 validation groups: too few to bound a 90 % interval (19 needed), enough for 50 %.
    stored = EffectInterval.from_state(screened.pseudobulk.uns["ptrag"]["effect_interval"])
    assert stored is not None and stored.n_groups == len(groups) == 10
    assert (stored.log_low, stored.log_high) == (-np.inf, np.inf)
    assert (screened.table["effect_low"] == 0).all() and np.isinf(screened.table["effect_high"]).all()
    # Too few groups for the evidence regression too: the expected effect is the model's.
    np.testing.assert_allclose(screened.table["expected_effect"], screened.table["effect_size"], rtol=1e-9)
    half = calibrate_effect_interval(checkpoint, dataset, 40, level=0.5)
    expected = EffectInterval.fit(np.array(predicted), np.array(observed), level=0.5)
    assert half is not None and np.isfinite([half.log_low, half.log_high]).all()
    # The run holds expression as float16 (data.storage = auto): agreement to ~1e-3 in log ratio.
    assert half.log_low == pytest.approx(expected.log_low, abs=2e-3)
    assert half.log_high == pytest.approx(expected.log_high, abs=2e-3)


def test_split_conformal_bounds_are_the_promised_order_statistics_and_cover_ninety_percent() -> None:
    scores = np.arange(1.0, 20.0)  # 19 log ratios: the 1st and the 19th bound a 90 % interval
    interval = EffectInterval.fit(np.ones(19), np.exp(scores))
    assert (interval.log_low, interval.log_high, interval.n_groups) == (1.0, 19.0, 19)
    few = EffectInterval.fit(np.ones(10), np.exp(np.arange(10.0)))
    assert few.log_low == -np.inf and few.log_high == np.inf  # too few groups to bound either side
    rng = np.random.default_rng(0)
    covered = []
    for _ in range(2000):  # exchangeable calibration and test genes: coverage ≥ 90 %, close to it
        predicted = rng.lognormal(0.0, 0.5, size=41)
        observed = predicted * rng.lognormal(0.2, 0.3, size=41)
        fitted = EffectInterval.fit(predicted[:40], observed[:40])
        low, high = fitted.bounds(predicted[40:], np.zeros(1))
        covered.append(bool(low[0] <= observed[40] <= high[0]))
    assert 0.89 <= np.mean(covered) <= 0.94


def test_the_evidence_regression_shrinks_genes_far_from_measured_ones_as_validation_says() -> None:
    rng = np.random.default_rng(1)

    def groups(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        # Measured effects fall off with distance from the measured perturbations: a gene at
        # cosine 0.3 shows exp(2 · (0.3 − 0.8)) = 37 % of what the model predicts for it.
        model = rng.lognormal(0.0, 0.4, size=n)
        cosine = rng.uniform(0.3, 0.9, size=n)
        return model, model * np.exp(2.0 * (cosine - 0.8)) * rng.lognormal(0.0, 0.2, size=n), cosine

    fitted = EffectInterval.fit(*groups(200))
    assert fitted.cosine_slope == pytest.approx(2.0, abs=0.3)
    assert fitted.effect_slope == pytest.approx(1.0, abs=0.15)
    assert fitted.intercept == pytest.approx(-1.6, abs=0.3)
    far, near = fitted.expected(np.ones(2), np.array([0.3, 0.8]))
    assert far < 0.45 < 0.85 < near
    model, observed, cosine = groups(4000)
    low, high = fitted.bounds(model, cosine)
    assert 0.86 <= np.mean((low <= observed) & (observed <= high)) <= 0.94
    # Without the cosine (or with too few groups) the model's own effect is the expected one.
    assert EffectInterval.fit(model[:19], observed[:19], cosine[:19]).cosine_slope == 0.0
