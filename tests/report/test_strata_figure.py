"""The per-stratum figure: stratum shifts follow the basal states, and the file is written."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd

from ptrag.report.strata_figure import stratum_shifts, write_strata_figure

CONTROL = "non-targeting"
N_GENES = 30


def _adata(blocks: list[tuple[str, np.ndarray]]) -> ad.AnnData:
    labels = [label for label, x in blocks for _ in range(len(x))]
    names = [f"c{i}" for i in range(len(labels))]
    obs = pd.DataFrame({"cell_type": "k562", "target_gene": labels}, index=names)
    return ad.AnnData(np.vstack([x for _, x in blocks]).astype(np.float32), obs=obs)


def _cells(rng: np.random.Generator, n: int, respond: str) -> np.ndarray:
    """State 1 raises genes 0-4 by 4; 'state0' raises genes 10-14 by 3 in state-0 cells only."""
    state = rng.random(n) < 0.5
    x = rng.normal(0.0, 0.5, (n, N_GENES)) + 5.0
    x[:, :5] += 4.0 * state[:, None]
    if respond == "state0":
        x[np.ix_(~state, np.arange(10, 15))] += 3.0
    if respond == "pooled":
        x[:, 10:15] += 1.5
    return x


def test_stratum_shifts_tell_a_state_dependent_response_from_a_pooled_one(tmp_path):
    rng = np.random.default_rng(0)
    controls = _cells(rng, 400, "none")
    real = _adata([(CONTROL, controls), ("P1", _cells(rng, 300, "state0"))])
    right = _adata([(CONTROL, controls), ("P1", _cells(rng, 300, "state0"))])
    pooled = _adata([(CONTROL, controls), ("P1", _cells(rng, 300, "pooled"))])
    shifts = stratum_shifts(real, {"per-state": right, "pooled": pooled}, "k562", "P1", CONTROL)
    real_shift, counts = shifts["real"]
    responding = real_shift[:, 10:15].mean(axis=1)
    assert counts.sum() == 300 and shifts["k"] == 4
    # Strata of state 0 show the response (about 3), strata of state 1 none.
    assert np.nanmax(responding) > 2.5 and np.nanmin(responding) < 0.5
    right_shift, _ = shifts["predicted"]["per-state"]
    pooled_shift, _ = shifts["predicted"]["pooled"]
    assert np.nanmax(np.abs(right_shift[:, 10:15].mean(axis=1) - responding)) < 0.4
    assert np.nanmax(np.abs(pooled_shift[:, 10:15].mean(axis=1) - responding)) > 1.2
    path = write_strata_figure(real, {"per-state": right, "pooled": pooled}, "k562", "P1", tmp_path / "s.png")
    assert path.stat().st_size > 10_000 and path.read_bytes()[:4] == b"\x89PNG"
