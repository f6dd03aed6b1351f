"""How realistic a simulated screen is, measured from the files it wrote (data, truth, embeddings).

Definitions (docs/simulation.md has the reasoning):

- *downstream shift* of a condition: its true mean shift (truth.parquet) with the target's own
  column set to 0, so the knock-down does not dominate correlations.
- *near-null*: no non-target gene has an expected |z| >= 4, where
  ``z = shift / sqrt(var_ctrl * (1/n_cells + 1/n_controls))`` uses the line's control variance
  and the condition's real cell counts: nothing a DE test at that depth would find.
- correlations (same-complex, other pairs, embedding, cross-line) use the Pearson correlation of
  downstream shifts of non-near-null conditions; pairs are taken within a line.
- noise floor: for the 5 strongest perturbations of each line, the energy distance between two
  random halves of their cells vs. between one half and as many control cells (equal set sizes, so
  the V-statistic's small-sample bias is the same on both sides), on PCA(30) of the line's log1p
  data.
- oracle rows (presets with a basal state, ``obs["sim_state"]``): the per-cell and mean-shift oracles
  of :mod:`ptrag.simulation.oracle` and the ``control`` reference scored on the few-shot test
  conditions (``report["oracle"]``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd
from anndata.io import read_elem
from scipy import stats

from ptrag.simulation.api import CONDITIONS_FILE, DATA_FILE, TRUTH_FILE
from ptrag.simulation.cells import STATE_COLUMN

__all__ = ["CONTROL_LABEL", "energy_distance", "format_report", "realism_report", "write_realism_report"]

CONTROL_LABEL = "non-targeting"
Z_DETECT = 4.0
N_STRONG_PER_LINE = 5
N_PCS = 30

# metric -> (low, high, what); the targets. None means unbounded on that side.
TARGETS: dict[str, tuple[float | None, float | None, str]] = {
    "pearson_same_complex": (0.4, None, "mean Pearson of true shifts, same-complex pairs"),
    "pearson_other_pairs": (None, 0.1, "mean Pearson of true shifts, random pairs (no shared complex)"),
    "embedding_spearman": (0.1, 0.6, "Spearman: embedding cosine vs response correlation, over pairs"),
    "cross_line_pearson": (0.3, 0.8, "Pearson of one perturbation's shift across two lines"),
    "near_null_fraction": (0.2, 0.5, "fraction of (line, perturbation) that are near-null"),
    "noise_floor_ratio": (None, 0.5, "split-half energy distance / control-vs-perturbed, strong perts"),
}


def _read_obs_and_rows(path: Path) -> tuple[pd.DataFrame, h5py.File]:
    handle = h5py.File(path, "r")
    return read_elem(handle["obs"]), handle


def _rows(handle: h5py.File, index: np.ndarray, block: int = 16_384) -> np.ndarray:
    """Rows of obsm["X_hvg"] as float32, in the order of ``index``, read in contiguous blocks.

    Sequential blocks are much faster than h5py fancy indexing and keep memory at one block.
    """
    data = handle["obsm/X_hvg"]
    order = np.argsort(index, kind="stable")
    wanted = index[order]
    out = np.empty((len(index), data.shape[1]), dtype=np.float32)
    start = 0
    while start < len(wanted):
        first = wanted[start]
        stop = np.searchsorted(wanted, first + block, side="left")
        chunk = data[first : wanted[stop - 1] + 1]
        out[order[start:stop]] = chunk[wanted[start:stop] - first]
        start = stop
    return out


def energy_distance(x: np.ndarray, y: np.ndarray) -> float:
    """Energy distance 2E|X-Y| - E|X-X'| - E|Y-Y'| (V-statistic: all pairs, so never negative)."""

    def mean_dist(a: np.ndarray, b: np.ndarray) -> float:
        squared = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T
        return float(np.sqrt(np.maximum(squared, 0.0)).mean())

    return 2 * mean_dist(x, y) - mean_dist(x, x) - mean_dist(y, y)


def _pca(data: np.ndarray, n_components: int) -> np.ndarray:
    centred = data - data.mean(axis=0, keepdims=True)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    return centred @ vt[:n_components].T


def _pair_correlations(shifts: np.ndarray) -> np.ndarray:
    centred = shifts - shifts.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(centred, axis=1)
    return (centred @ centred.T) / np.outer(norms, norms)


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("nan")


def realism_report(out_dir: str | Path, embeddings: Any | None = None, seed: int = 0) -> dict[str, Any]:
    """Compute the realism metrics of a simulated screen in ``out_dir`` (see module docstring).

    ``embeddings`` is a ``GeneEmbeddings``; default: the bundled GenePT-style embeddings.
    """
    out = Path(out_dir)
    truth = pd.read_parquet(out / TRUTH_FILE)
    conditions = pd.read_csv(out / CONDITIONS_FILE)
    genes = [c for c in truth.columns if c not in ("cell_line", "perturbation")]
    shifts = truth[genes].to_numpy(dtype=np.float64)
    downstream = shifts.copy()
    target_idx = conditions["target_measured_index"].to_numpy()
    rows_with_target = np.nonzero(target_idx >= 0)[0]
    downstream[rows_with_target, target_idx[rows_with_target]] = 0.0

    if embeddings is None:
        from ptrag.embeddings.bundled import load_bundled_embeddings

        embeddings = load_bundled_embeddings()
    emb_pos = {s: i for i, s in enumerate(embeddings.symbols)}

    obs, handle = _read_obs_and_rows(out / DATA_FILE)
    rng = np.random.default_rng(seed)
    try:
        counts = obs.groupby(["cell_line", "gene"], observed=True).size()
        near_null = np.zeros(len(truth), dtype=bool)
        noise_floor, effect = [], []
        same, other, emb_cos, emb_corr = [], [], [], []
        for line in pd.unique(truth["cell_line"]):
            in_line = np.nonzero(truth["cell_line"].to_numpy() == line)[0]
            line_cells = np.nonzero((obs["cell_line"] == line).to_numpy())[0]
            is_ctrl = obs["gene"].to_numpy()[line_cells] == CONTROL_LABEL
            controls = line_cells[is_ctrl]
            ctrl_expr = _rows(handle, controls)
            var_ctrl = ctrl_expr.var(axis=0, ddof=1) + 1e-6
            n_pert = np.array([counts.get((line, p), 0) for p in truth["perturbation"].to_numpy()[in_line]])
            se = np.sqrt(var_ctrl[None, :] * (1.0 / np.maximum(n_pert, 1)[:, None] + 1.0 / len(controls)))
            near_null[in_line] = (np.abs(downstream[in_line]) / se).max(axis=1) < Z_DETECT

            active = in_line[~near_null[in_line]]
            corr = _pair_correlations(downstream[active])
            cats = conditions["category"].to_numpy()[active]
            perts = truth["perturbation"].to_numpy()[active]
            complex_member = ~np.isin(cats, ["other", "background"])
            iu, ju = np.triu_indices(len(active), k=1)
            same_mask = (cats[iu] == cats[ju]) & complex_member[iu]
            same += corr[iu, ju][same_mask].tolist()
            other += corr[iu, ju][~same_mask].tolist()
            have = np.array([p in emb_pos for p in perts])
            keep = have[iu] & have[ju]
            vecs = (
                np.stack(
                    [
                        embeddings.matrix[emb_pos[p]]
                        if p in emb_pos
                        else np.zeros(embeddings.matrix.shape[1])
                        for p in perts
                    ]
                )
                if len(perts)
                else np.zeros((0, 1))
            )
            emb_cos += (vecs[iu[keep]] * vecs[ju[keep]]).sum(axis=1).tolist()
            emb_corr += corr[iu, ju][keep].tolist()

            strength = np.linalg.norm(downstream[in_line], axis=1)
            strong = in_line[np.argsort(-strength)[:N_STRONG_PER_LINE]]
            pert_rows = {
                p: line_cells[obs["gene"].to_numpy()[line_cells] == p]
                for p in truth["perturbation"].to_numpy()[strong]
            }
            pooled = np.concatenate([ctrl_expr] + [_rows(handle, r) for r in pert_rows.values()])
            scores = _pca(pooled, min(N_PCS, pooled.shape[1], pooled.shape[0] - 1))
            ctrl_scores, offset = scores[: len(controls)], len(controls)
            for cells in pert_rows.values():
                pert_scores = scores[offset : offset + len(cells)]
                offset += len(cells)
                half = rng.permutation(len(cells))
                a, b = pert_scores[half[: len(cells) // 2]], pert_scores[half[len(cells) // 2 :]]
                noise_floor.append(energy_distance(a, b))
                # Same set sizes on both sides: the V-statistic's small-sample bias then cancels.
                ctrl_half = ctrl_scores[rng.choice(len(ctrl_scores), size=len(b), replace=False)]
                effect.append(energy_distance(ctrl_half, b))
        obs_n, n_genes = len(obs), handle["obsm/X_hvg"].shape[1]
        has_states = STATE_COLUMN in obs.columns
        sample = _rows(handle, np.sort(rng.choice(obs_n, size=min(obs_n, 2000), replace=False)))
        sparsity = float((sample == 0).mean())
    finally:
        handle.close()

    cross = []
    keyed = {
        (c, p): i for i, (c, p) in enumerate(zip(truth["cell_line"], truth["perturbation"], strict=True))
    }
    lines = list(pd.unique(truth["cell_line"]))
    for p in pd.unique(truth["perturbation"]):
        present = [keyed[(c, p)] for c in lines if (c, p) in keyed and not near_null[keyed[(c, p)]]]
        for i in range(len(present)):
            for j in range(i + 1, len(present)):
                cross.append(float(np.corrcoef(downstream[present[i]], downstream[present[j]])[0, 1]))

    spearman = float(stats.spearmanr(emb_cos, emb_corr).statistic) if len(emb_cos) > 2 else float("nan")
    floor, eff = np.asarray(noise_floor), np.asarray(effect)
    metrics = {
        "pearson_same_complex": _mean(same),
        "pearson_other_pairs": _mean(other),
        "embedding_spearman": spearman,
        "cross_line_pearson": _mean(cross),
        "near_null_fraction": float(near_null.mean()),
        "noise_floor_ratio": float(np.median(floor / eff)) if len(eff) else float("nan"),
    }
    report: dict[str, Any] = {
        "metrics": metrics,
        "targets": {k: {"low": lo, "high": hi, "what": what} for k, (lo, hi, what) in TARGETS.items()},
        "within_targets": {k: _within(metrics[k], *TARGETS[k][:2]) for k in TARGETS},
        "details": {
            "n_cells": int(obs_n),
            "n_genes": int(n_genes),
            "n_conditions": len(truth),
            "n_same_complex_pairs": len(same),
            "n_other_pairs": len(other),
            "n_embedding_pairs": len(emb_cos),
            "n_cross_line_pairs": len(cross),
            "near_null_by_design_fraction": float(conditions["null_by_design"].mean()),
            "noise_floor_energy_median": float(np.median(floor)) if len(floor) else float("nan"),
            "control_vs_perturbed_energy_median": float(np.median(eff)) if len(eff) else float("nan"),
            "sparsity": sparsity,
            "pearson_all_pairs": _mean(same + other),
        },
    }
    if has_states:
        from ptrag.simulation.oracle import oracle_report

        report["oracle"] = oracle_report(out, seed=seed)
    return report


def _within(value: float, low: float | None, high: float | None) -> bool:
    if not np.isfinite(value):
        return False
    return (low is None or value >= low) and (high is None or value <= high)


def format_report(report: dict[str, Any]) -> str:
    """The realism table as plain text."""
    lines = [f"{'metric':<24} {'value':>8}  {'target':<17} ok  what", "-" * 100]
    for key, (low, high, what) in TARGETS.items():
        value = report["metrics"][key]
        target = " and ".join(
            part
            for part in (None if low is None else f">= {low}", None if high is None else f"<= {high}")
            if part
        )
        ok = "yes" if report["within_targets"][key] else "NO"
        lines.append(f"{key:<24} {value:>8.3f}  {target:<17} {ok:<3} {what}")
    details = report["details"]
    lines.append("")
    d = details
    lines.append(
        f"{d['n_cells']} cells x {d['n_genes']} genes, {d['n_conditions']} (line, perturbation); "
        f"sparsity {d['sparsity']:.2f}; energy, strong perturbations (medians): split-half "
        f"{d['noise_floor_energy_median']:.3f} vs control-vs-perturbed "
        f"{d['control_vs_perturbed_energy_median']:.3f}"
    )
    if "oracle" in report:
        from ptrag.simulation.oracle import format_oracle_report

        lines += ["", format_oracle_report(report["oracle"])]
    return "\n".join(lines)


def write_realism_report(out_dir: str | Path, embeddings: Any | None = None) -> dict[str, Any]:
    """Compute :func:`realism_report` and save it as ``out_dir/realism.json``; returns the report."""
    import json

    from ptrag.io import atomic_write_text
    from ptrag.simulation.api import REALISM_FILE

    report = realism_report(out_dir, embeddings)
    uns = _simulation_uns(Path(out_dir) / DATA_FILE)
    report["preset"], report["seed"] = uns.get("preset"), uns.get("seed")
    atomic_write_text(Path(out_dir) / REALISM_FILE, json.dumps(report, indent=2, default=_jsonable) + "\n")
    return report


def _simulation_uns(path: Path) -> dict[str, Any]:
    with h5py.File(path, "r") as handle:
        if "uns/ptrag_simulation" not in handle:
            return {}
        return {k: _jsonable(v) for k, v in read_elem(handle["uns/ptrag_simulation"]).items()}


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return value
