"""Per-gene spread of predicted against real cells (``ptrag.evaluation.spread``)."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from ptrag.evaluation import evaluate
from ptrag.evaluation.pair import ConditionPair
from ptrag.evaluation.spread import MOVED_SHARE, format_spread_summary, gene_spread, spread_summary

N_GENES = 20
WIDENED = np.arange(0, 5)  # the prediction doubles these genes' spread around each condition's mean
MOVED = np.arange(5, 10)  # the perturbations shift these genes by ~5 control SDs


def _screen(seed: int = 0) -> tuple[ad.AnnData, ad.AnnData]:
    rng = np.random.default_rng(seed)
    blocks, obs = [], []
    for cell_type in ("k562", "rpe1"):
        for perturbation, n in (("non-targeting", 60), ("A", 40), ("B", 30), ("SINGLE", 1)):
            x = rng.normal(2.0, 0.5, size=(n, N_GENES))
            if perturbation != "non-targeting":
                x[:, MOVED] += 2.5
            blocks.append(x)
            obs += [(cell_type, perturbation)] * n
    frame = pd.DataFrame(obs, columns=["cell_type", "target_gene"])
    frame.index = [f"cell{i}" for i in range(len(frame))]
    real = ad.AnnData(np.vstack(blocks).astype(np.float32), obs=frame)
    real.var_names = [f"GENE{g}" for g in range(N_GENES)]
    pred = real.copy()
    x = np.asarray(pred.X, dtype=np.float64)
    for _, rows in pred.obs.groupby(["cell_type", "target_gene"], observed=True).indices.items():
        centre = x[rows].mean(axis=0)
        x[np.ix_(rows, WIDENED)] = centre[WIDENED] + 2.0 * (x[np.ix_(rows, WIDENED)] - centre[WIDENED])
    pred.X = x.astype(np.float32)
    return pred, real


def _pair(pred: ad.AnnData, real: ad.AnnData) -> ConditionPair:
    return ConditionPair(pred, real, "target_gene", "cell_type", "non-targeting")


def test_gene_spread_keeps_the_genes_apart() -> None:
    pred, real = _screen()
    table = gene_spread(_pair(pred, real))
    assert list(table.index) == list(real.var_names)
    np.testing.assert_allclose(table["sd_ratio"].to_numpy()[WIDENED], 2.0, rtol=1e-5)
    others = np.setdiff1d(np.arange(N_GENES), WIDENED)
    np.testing.assert_allclose(table["sd_ratio"].to_numpy()[others], 1.0, rtol=1e-5)
    # the single-cell conditions have no SD: 2 cell types x 2 perturbations are averaged
    assert table.attrs["n_conditions"] == 4
    real_sd = np.mean(
        [real[(real.obs.cell_type == c) & (real.obs.target_gene == p)].X.std(axis=0, ddof=1)
         for c in ("k562", "rpe1") for p in ("A", "B")],
        axis=0,
    )
    np.testing.assert_allclose(table["sd_real"], real_sd, rtol=1e-4)
    # the shifted genes are the most moved (~5 control SDs against ~0.1 for the rest)
    assert table["moved"].sum() == int(np.ceil(MOVED_SHARE * N_GENES))
    assert set(np.flatnonzero(table["moved"])) == set(MOVED)
    assert table["effect"].to_numpy()[MOVED].min() > 3.5 > 1.0 > table["effect"].to_numpy()[WIDENED].max()


def test_the_summary_separates_the_moved_genes_from_the_rest() -> None:
    pred, real = _screen()
    summary = spread_summary(gene_spread(_pair(pred, real)))
    assert summary["moved"] == pytest.approx([1.0, 1.0, 1.0], rel=1e-5)
    assert summary["other"][2] == pytest.approx(2.0, rel=1e-5)  # a third of the rest is widened
    assert summary["other"][0] == pytest.approx(1.0, rel=1e-5)
    assert summary["share_off_by_10pct"] == pytest.approx(len(WIDENED) / N_GENES)
    assert summary["n_genes"] == N_GENES and summary["n_conditions"] == 4
    line = format_spread_summary(summary)
    assert "the rest 1.000 (1.000–2.000)" in line and "25% of genes more than 10 % off" in line


@pytest.mark.filterwarnings("ignore:Mean of empty slice")  # the one-cell conditions have no MMD
def test_evaluate_returns_the_spread_table() -> None:
    pred, real = _screen()
    result = evaluate(pred, real, progress=False, include_de=False, include_ot=False)
    assert result.gene_spread is not None
    pd.testing.assert_frame_equal(result.gene_spread, gene_spread(_pair(pred, real)))
    # the genes' mean ratio and the sd_ratio metric tell the same story on the widened cells
    assert result.agg.loc["mean", "sd_ratio"] > 1.1


def test_a_gene_without_real_spread_has_no_ratio() -> None:
    pred, real = _screen()
    x = np.asarray(real.X).copy()
    x[:, 12] = 1.0
    real.X = x
    pred_x = np.asarray(pred.X).copy()
    pred_x[:, 12] = 1.0
    pred.X = pred_x
    table = gene_spread(_pair(pred, real))
    assert np.isnan(table.loc["GENE12", "sd_ratio"]) and table.loc["GENE12", "sd_real"] == 0.0
    assert spread_summary(table)["n_genes"] == N_GENES - 1
