"""Figure: predicted vs real cells by basal-state stratum for one perturbation of a benchmark.

Reads a ``ptrag benchmark`` output on a screen with basal states (``replogle-hetero``): one arm's
seed-0 prediction, that prediction's own mean shift on real control cells (the diagnostic row) and,
when the screen's truth is beside the data, the per-cell oracle. The perturbation shown is the test
condition whose real response differs most between strata (chosen from the real cells only).

    python benchmarks/strata_figure.py BENCH_DIR --arm memory --out docs/figures/strata_replogle_hetero.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import anndata as ad
import numpy as np

from ptrag.evaluation.control_draws import BuildContext
from ptrag.evaluation.references import mean_on_controls_pair
from ptrag.report.strata_figure import stratum_shifts, write_strata_figure

CONTROL = "non-targeting"


def most_state_dependent(real: ad.AnnData) -> tuple[str, str]:
    """The condition whose per-stratum real shifts spread most around their mean."""
    best, best_spread = None, -1.0
    conditions = real.obs[["cell_type", "target_gene"]].astype(str).drop_duplicates()
    for cell_type, perturbation in conditions.itertuples(index=False):
        if perturbation == CONTROL:
            continue
        shift, counts = stratum_shifts(real, {}, cell_type, perturbation, CONTROL)["real"]
        usable = counts >= 10
        if usable.sum() < 2:
            continue
        spread = float(np.nanmean(np.nanstd(shift[usable], axis=0)))
        if spread > best_spread:
            best, best_spread = (cell_type, perturbation), spread
    assert best is not None, "no condition with two strata of at least 10 real cells"
    return best


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("bench", type=Path)
    parser.add_argument("--arm", default="memory")
    parser.add_argument("--split", default="fewshot")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    pred_dir = args.bench / "predictions" / args.split / f"{args.arm}-seed0"
    pred = ad.read_h5ad(pred_dir / "adata_pred.h5ad")
    real = ad.read_h5ad(pred_dir / "adata_real.h5ad")
    cell_type, perturbation = most_state_dependent(real)
    own, _ = mean_on_controls_pair(pred, real, BuildContext(CONTROL), args.arm)
    predictions = {args.arm: pred, f"{args.arm}_mean_on_controls": own}
    sim_dir = args.bench / "data"
    if (sim_dir / "truth.parquet").is_file():
        from ptrag.simulation.oracle import oracle_prediction

        predictions["oracle_per_cell"] = oracle_prediction(sim_dir, real, "per_cell")
    path = write_strata_figure(real, predictions, cell_type, perturbation, args.out, CONTROL)
    print(f"{perturbation} in {cell_type} → {path}")


if __name__ == "__main__":
    main()
