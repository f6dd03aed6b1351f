"""Paired Wilcoxon tests and bootstrap CIs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import wilcoxon

from ptrag.evaluation import bootstrap_ci, paired_tests


def _long_table(seed: int = 0, n: int = 25) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    st = rng.gamma(2.0, 1.0, n)
    rows = []
    for arm, values in (("st", st), ("ptrag", st - 0.3 + rng.normal(0, 0.2, n)), ("rag", st + 0.5)):
        for i, value in enumerate(values):
            rows.append(
                {
                    "arm": arm,
                    "cell_type": "k562",
                    "perturbation": f"P{i}",
                    "w1": value,
                    "pearson_delta": -value,
                }
            )
    return pd.DataFrame(rows)


def test_wilcoxon_matches_scipy_and_counts_wins():
    table = _long_table()
    tests = paired_tests(table, baseline="st", metrics=["w1", "pearson_delta"]).set_index(["arm", "metric"])
    st = table[table.arm == "st"]["w1"].to_numpy()
    pt = table[table.arm == "ptrag"]["w1"].to_numpy()
    expected = wilcoxon(pt, st)
    assert tests.loc[("ptrag", "w1"), "p_value"] == pytest.approx(expected.pvalue, rel=1e-12)
    assert tests.loc[("ptrag", "w1"), "statistic"] == pytest.approx(expected.statistic)
    assert tests.loc[("ptrag", "w1"), "median_difference"] == pytest.approx(np.median(pt - st))
    assert tests.loc[("ptrag", "w1"), "wins"] == int((pt < st).sum())  # lower w1 wins
    assert tests.loc[("rag", "w1"), "losses"] == 25
    assert tests.loc[("rag", "pearson_delta"), "losses"] == 25  # lower pearson loses
    assert "st" not in tests.index.get_level_values("arm")


def test_pairs_with_nan_are_dropped():
    table = _long_table()
    table.loc[(table.arm == "ptrag") & (table.perturbation == "P0"), "w1"] = np.nan
    tests = paired_tests(table, metrics=["w1"]).set_index(["arm", "metric"])
    assert tests.loc[("ptrag", "w1"), "n_pairs"] == 24
    assert np.isfinite(tests.loc[("ptrag", "w1"), "p_value"])


def test_bootstrap_ci_brackets_the_mean_and_narrows_with_more_data():
    rng = np.random.default_rng(0)
    small = rng.normal(1.0, 1.0, 20)
    large = rng.normal(1.0, 1.0, 2000)
    low, high = bootstrap_ci(small)
    assert low < small.mean() < high
    low_large, high_large = bootstrap_ci(large)
    assert high_large - low_large < (high - low) / 3
    assert bootstrap_ci([np.nan, 2.0, 2.0]) == (2.0, 2.0)
    assert all(np.isnan(bootstrap_ci([])))
