"""How well can any method rank never-measured knockdowns by effect size on a simulated screen?

    python benchmarks/unseen_effect_ceiling.py SIM_DIR [--json benchmarks/results/unseen_effect_ceiling.json]

``SIM_DIR`` is what ``ptrag simulate`` wrote (``data.h5ad``, ``truth.parquet``, the split files).
The simulator gives each knockdown a random strength (log-normal, shared by the lines that measure
it) and a random idiosyncratic response on top of what its gene annotation decides (its programmes'
responses and, by category, the chance that it does nothing). A method that has never seen the
knockdown can at best know the annotated part. This script builds that best guess from the
simulator's own parameters — each target's true programme membership, the programmes' true loadings
in its line, its category's null probability, the strength and the knockdown at their means, no
idiosyncratic part — turns it into an expected effect exactly as the truth is made (expected log1p
expression of perturbed minus control cells, L2 norm) and reports how it ranks the true effects of
each split's test groups (Spearman per line, averaged, with a bootstrap 95 % interval over groups).
It is an oracle: no method reads these parameters. Measured numbers for ptrag are in
``benchmarks/results/screen_effects_replogle_like.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path

import numpy as np
from scipy import stats

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from screen_effects import true_effects  # beside this script

SPLIT_FILES = {"fewshot": "split.toml", "unseen": "split_unseen.toml"}
N_BOOTSTRAP = 2000


def knowable_effects(sim_dir: Path) -> tuple[object, np.ndarray]:
    """The screen model and, per condition, the expected effect from its annotation alone."""
    import anndata as ad

    from ptrag.simulation.api import build_screen_model
    from ptrag.simulation.expectation import true_shifts
    from ptrag.simulation.model import NON_COMPLEX_CATEGORIES

    simulated = ad.read_h5ad(sim_dir / "data.h5ad", backed="r").uns["ptrag_simulation"]
    model = build_screen_model(str(simulated["preset"]), int(simulated["seed"]))
    selection, params = model.selection, model.preset.response
    target_row = {t: i for i, t in enumerate(selection.targets)}
    measured_column = {g: i for i, g in enumerate(selection.measured)}
    line_index = {line: i for i, line in enumerate(model.lines)}
    mean_strength = np.exp(params.strength_sigma**2 / 2) * np.exp(params.line_strength_sigma**2 / 2)
    downstream = np.zeros_like(model.downstream_lfc)
    null_prob = np.zeros(len(model.conditions))
    for i, row in enumerate(model.conditions.itertuples()):
        p = target_row[row.perturbation]
        programme = selection.membership[p] @ model.program_loadings[:, line_index[row.cell_line], :]
        downstream[i] = np.clip(mean_strength * programme, -params.max_abs_lfc, params.max_abs_lfc)
        own = measured_column.get(row.perturbation, -1)
        if own >= 0:
            downstream[i, own] = 0.0  # the knockdown replaces any downstream effect on the target
        complex_member = selection.target_category[p] not in NON_COMPLEX_CATEGORIES
        null_prob[i] = params.null_prob_complex if complex_member else params.null_prob_other
    conditions = model.conditions.assign(
        knockdown=float(np.mean(params.knockdown_range)), escape_fraction=float(np.mean(params.escape_range))
    )
    n_batches = model.preset.n_batches_per_line
    weights = np.full((len(model.lines), n_batches), 1.0 / n_batches)
    responding = dataclasses.replace(
        model, downstream_lfc=downstream.astype(np.float32), conditions=conditions
    )
    silent = dataclasses.replace(model, downstream_lfc=np.zeros_like(downstream), conditions=conditions)
    effect_if_responding = np.linalg.norm(true_shifts(responding, weights), axis=1)
    effect_if_null = np.linalg.norm(true_shifts(silent, weights), axis=1)
    return model, (1.0 - null_prob) * effect_if_responding + null_prob * effect_if_null


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sim_dir", type=Path)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    from ptrag.data.splits import Split

    truth = true_effects(args.sim_dir / "data.h5ad")
    if truth is None:
        raise SystemExit(f"No truth.parquet in {args.sim_dir}: this needs a screen ptrag simulate wrote.")
    model, knowable = knowable_effects(args.sim_dir)
    conditions = model.conditions
    rng = np.random.default_rng(0)
    results: dict[str, object] = {}
    for name, file in SPLIT_FILES.items():
        split = Split.read(args.sim_dir / file)
        per_line, pairs = {}, []
        for line in model.lines:
            rows = [
                i for i, r in enumerate(conditions.itertuples())
                if r.cell_line == line and split.role(line, r.perturbation) == "test"
            ]
            guess = knowable[rows]
            true = np.array([truth[(line, conditions.perturbation.iloc[i])] for i in rows])
            per_line[line] = float(stats.spearmanr(guess, true).statistic)
            pairs.append((guess, true))
        boot = []
        for _ in range(N_BOOTSTRAP):
            values = []
            for guess, true in pairs:
                pick = rng.integers(0, len(guess), len(guess))
                values.append(stats.spearmanr(guess[pick], true[pick]).statistic)
            boot.append(np.nanmean(values))
        mean = float(np.mean(list(per_line.values())))
        low, high = (float(v) for v in np.percentile(boot, [2.5, 97.5]))
        results[name] = {"spearman_oracle_vs_true": mean, "ci95": [low, high], "per_line": per_line}
        print(f"{name}: the annotation oracle ranks test groups' true effects at Spearman {mean:.2f} "
              f"(95 % bootstrap {low:.2f}–{high:.2f}); per line " +
              ", ".join(f"{k} {v:.2f}" for k, v in per_line.items()))
    if args.json:
        record = {"preset": model.preset.name, "oracle": "annotation only (docstring)", "splits": results}
        args.json.write_text(json.dumps(record, indent=1) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
