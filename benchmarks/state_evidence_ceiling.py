"""Where the room between the oracles goes: what per-stratum evidence adds on a screen with basal states.

    python benchmarks/state_evidence_ceiling.py SIM_DIR RUN_DIR [--json PATH]

``SIM_DIR`` is what ``ptrag simulate --preset replogle-hetero`` wrote; ``RUN_DIR`` a run trained on
it (``ptrag train``, normally the memory arm on the few-shot split). Only the run's *validation*
groups are scored, and only its *training* groups are read as evidence.

Issue 21 asks the best arm to close half the gap between the mean-shift and the per-cell oracle on
``energy_strata``. This script separates the two things such a model needs:

1. **Resolution.** ``oracle_per_stratum`` gives each cell the per-cell oracle's shift averaged over
   its condition's cells of the same basal-state stratum: exact knowledge of each perturbation's
   state-dependence, read at the strata's resolution.
2. **Knowledge of each perturbation's state-dependence**, from the two sources the data have:
   - *neighbours*: the 20 training groups of the query's own cell type whose mean shifts correlate
     best with the query's predicted mean (weights: the correlation), each group's per-stratum
     residual (its stratum responses minus what the run's state gains predict from its mean) scaled
     by the projection of the query's mean on the group's;
   - *other lines*: the query's own per-stratum residuals in the other cell types that measured it
     (training groups there), strata matched by their centroids' correlation, projected on the 30
     leading directions of the training mean shifts (sampling noise off) and scaled by a
     coefficient per pair of cell types fitted on training perturbations measured in both.

Each source is added (its mean over the group removed, so the predicted mean does not move) to the
true mean shift spread by the state gains, and to the run's own generated cells. Printed and
written: the metrics of every row, the share of the oracle gap each closes, and paired Wilcoxon
tests over validation groups against the row it adds to.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import wilcoxon

os.environ.setdefault("OMP_NUM_THREADS", "1")

METRICS = ("energy_strata", "energy_gene_unbiased", "energy_gene", "w1", "mmd_gene", "sd_ratio")
N_NEIGHBOURS = 20
N_DIRECTIONS = 30


def line_evidence(x, obs, line, split, control_label):
    """One cell type's strata, its training groups' mean shifts and per-stratum responses, and the
    state gains fitted from them as the run fits them (``ptrag.run.state_gains``)."""
    from ptrag.data.strata import assign_strata, fit_strata, left_alone_genes
    from ptrag.run.state_gains import MIN_CELLS_PER_GROUP, MIN_CELLS_PER_STRATUM, gains_from_sums

    in_line = (obs["cell_line"] == line).to_numpy()
    strata = fit_strata(x[in_line & (obs["gene"] == control_label).to_numpy()])
    groups = {}
    for gene, rows in obs[in_line].groupby("gene", observed=True).indices.items():
        if gene == control_label or split.role(line, gene) != "train" or len(rows) < MIN_CELLS_PER_GROUP:
            continue
        cells = x[np.flatnonzero(in_line)[rows]]
        shift = cells.mean(0) - strata.control_mean
        labels = assign_strata(strata, cells, left_alone_genes(strata, cells))
        response = np.zeros((strata.k, x.shape[1]))
        seen = np.zeros(strata.k, dtype=bool)
        for k in range(strata.k):
            if (labels == k).sum() >= MIN_CELLS_PER_STRATUM:
                response[k] = cells[labels == k].mean(0) - strata.centroids[k]
                seen[k] = True
        groups[gene] = (shift, response, seen)
    shifts = np.stack([g[0] for g in groups.values()])
    seen = np.stack([g[2] for g in groups.values()]).astype(np.float64)
    numerator = np.einsum("nk,nkg,ng->kg", seen, np.stack([g[1] for g in groups.values()]), shifts)
    gains, _ = gains_from_sums(numerator, np.einsum("nk,ng->kg", seen, shifts * shifts))
    residuals = {gene: ((r - gains * s) * ok[:, None], ok) for gene, (s, r, ok) in groups.items()}
    return strata, gains, dict(zip(groups, shifts, strict=True)), residuals


def neighbour_residual(mean, shifts, residuals):
    """(k, genes): the query's per-stratum residual from its best-correlated training groups."""
    names = list(shifts)
    matrix = np.stack([shifts[n] for n in names])
    corr = np.array([np.corrcoef(mean, row)[0, 1] for row in matrix])
    total = weight = 0.0
    for j in np.argsort(-corr)[:N_NEIGHBOURS]:
        w = max(corr[j], 0.0)
        residual, seen = residuals[names[j]]
        total = total + w * (mean @ matrix[j]) / (matrix[j] @ matrix[j]) * residual
        weight = weight + w * seen
    return total / np.maximum(weight, 1e-12)[:, None]


def main() -> None:
    import anndata as ad

    import ptrag
    from ptrag.data.strata import assign_strata
    from ptrag.evaluation import evaluate, fit_pca_on_real
    from ptrag.simulation.oracle import load_screen_model, oracle_predictions

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("sim_dir", type=Path)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    data = ad.read_h5ad(args.sim_dir / "data.h5ad")
    x = np.asarray(data.obsm["X_hvg"], dtype=np.float64)
    obs = data.obs
    control_label = "non-targeting"
    run = ptrag.Model.load(args.run_dir)
    split = run.run_split()
    lines = sorted(obs["cell_line"].astype(str).unique())
    evidence = {line: line_evidence(x, obs, line, split, control_label) for line in lines}
    all_shifts = np.concatenate([np.stack(list(e[2].values())) for e in evidence.values()])
    directions = np.linalg.svd(all_shifts, full_matrices=False)[2][:N_DIRECTIONS]

    def project(values):
        return (values @ directions.T) @ directions

    def offsets(line):
        strata = evidence[line][0]
        return strata.centroids - strata.control_mean

    def matched(a, b):  # b's stratum -> a's, by the correlation of their centroid offsets
        oa, ob = offsets(a), offsets(b)
        oa, ob = oa - oa.mean(1, keepdims=True), ob - ob.mean(1, keepdims=True)
        return ((ob @ oa.T) / np.outer(np.linalg.norm(ob, axis=1), np.linalg.norm(oa, axis=1))).argmax(1)

    coefficient = {}
    for a in lines:
        for b in lines:
            if a == b:
                continue
            order = matched(a, b)
            num = den = 0.0
            for gene, (res_b, seen_b) in evidence[b][3].items():
                if gene in evidence[a][3]:
                    res_a, seen_a = evidence[a][3][gene]
                    use = seen_b & seen_a[order]
                    pa, pb = project(res_a[order][use]), project(res_b[use])
                    num, den = num + (pa * pb).sum(), den + (pa * pa).sum()
            coefficient[(a, b)] = num / den if den > 0 else 0.0

    def other_lines_residual(gene, line):
        total = 0.0
        for a in lines:
            if a != line and gene in evidence[a][3]:
                total = total + coefficient[(a, line)] * project(evidence[a][3][gene][0][matched(a, line)])
        return total

    pred, real = run.predict(args.sim_dir / "data.h5ad", split="val", progress=False)
    model = load_screen_model(args.sim_dir)
    oracles = {f"oracle_{k}": pred for k, pred in oracle_predictions(args.sim_dir, real, model=model).items()}
    row_of = pd.Series(np.arange(data.n_obs), index=data.obs_names)

    def variants(source, spread_gains):
        """The source's cells (own controls + its mean, spread by the gains when asked) and the same
        with each source of per-stratum evidence added."""
        base = np.asarray(source.X, dtype=np.float64).copy()
        out = {name: base.copy() for name in ("_own_mean", "", "+neighbours", "+other_lines")}
        perturbed = (source.obs["target_gene"] != control_label).to_numpy()
        keys = source.obs[perturbed].groupby(["target_gene", "cell_type"], observed=True).indices
        for (gene, line), rows in keys.items():
            rows = np.flatnonzero(perturbed)[rows]
            controls = x[row_of[source.obs["control_barcode"].to_numpy()[rows]].to_numpy()]
            strata, gains, shifts, residuals = evidence[line]
            labels = assign_strata(strata, controls)
            mean = base[rows].mean(0) - controls.mean(0)
            out["_own_mean"][rows] = controls - controls.mean(0) + base[rows].mean(0)
            if spread_gains:
                spread = gains[labels] * mean
                out[""][rows] = controls - controls.mean(0) + base[rows].mean(0) + spread - spread.mean(0)
            for name, residual in (
                ("+neighbours", neighbour_residual(mean, shifts, residuals)),
                ("+other_lines", other_lines_residual(gene, line)),
            ):
                residual = np.asarray(residual)
                add = residual[labels] if residual.ndim == 2 else np.zeros_like(controls)
                out[name][rows] = out[""][rows] + add - add.mean(axis=0)
        return out

    cells = {name: np.asarray(o.X) for name, o in oracles.items()}
    for name, matrix in variants(oracles["oracle_mean_shift"], spread_gains=True).items():
        cells[f"true_mean_with_gains{name}"] = matrix
    for name, matrix in variants(pred, spread_gains=False).items():
        cells[f"arm{name}"] = matrix
    pca = fit_pca_on_real(real)
    results = {}
    for name, matrix in cells.items():
        layout = oracles["oracle_mean_shift"] if name.startswith(("oracle", "true")) else pred
        scored = layout.copy()
        scored.X = np.asarray(matrix, dtype=np.float32)
        results[name] = evaluate(scored, real, pca=pca, include_de=False, progress=False).results
    table = pd.DataFrame({name: r[list(METRICS)].mean() for name, r in results.items()}).T
    gap = table.loc["oracle_mean_shift", "energy_strata"] - table.loc["oracle_per_cell", "energy_strata"]
    # Share of the oracle gap closed, from the mean each row spreads: the truth's for the oracles and
    # the true-mean rows, the arm's own mean on its own control cells for the arm's rows.
    start = np.where(
        table.index.str.startswith("arm"),
        table.loc["arm_own_mean", "energy_strata"],
        table.loc["oracle_mean_shift", "energy_strata"],
    )
    table["gap_closed"] = (start - table["energy_strata"]) / gap
    tests = {}
    for base in ("true_mean_with_gains", "arm"):
        for added in ("+neighbours", "+other_lines"):
            a, b = results[base + added]["energy_strata"], results[base]["energy_strata"]
            tests[base + added] = {
                "energy_strata_gain": float(b.mean() - a.mean()),
                "gap_share": float((b.mean() - a.mean()) / gap),
                "better_groups": int((a < b).sum()),
                "groups": len(a),
                "p": float(wilcoxon(a, b).pvalue),
            }
    print(table.to_string(float_format=lambda v: f"{v:.4f}"))
    print(pd.DataFrame(tests).T.to_string(float_format=lambda v: f"{v:.4g}"))
    pairs = {f"{a}->{b}": round(float(v), 3) for (a, b), v in coefficient.items()}
    print("coefficient per pair of cell types (other lines):", pairs)
    if args.json is not None:
        simulated = data.uns.get("ptrag_simulation", {})
        record = {
            "screen": f"{simulated.get('preset')} seed {simulated.get('seed')}",
            "run": f"{run.config.model.arm}, max_steps {run.config.train.max_steps}, split {split.name!r}",
            "groups": "validation",
            "rows": table.round(6).to_dict(orient="index"),
            "added_vs_base": tests,
            "pair_coefficients": {f"{a}->{b}": float(v) for (a, b), v in coefficient.items()},
        }
        args.json.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
