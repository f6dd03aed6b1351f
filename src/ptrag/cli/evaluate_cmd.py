"""``ptrag evaluate PRED_DIR``: score adata_pred.h5ad against adata_real.h5ad (cell-eval file names)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

DESCRIPTION = (
    "Read PRED_DIR/adata_pred.h5ad and PRED_DIR/adata_real.h5ad (identical var_names, same "
    "(cell type, perturbation) conditions, control cells in both), compute every metric per "
    "(cell type, perturbation) — w1, w2, w2_ot, mmd, energy, sd_ratio and cell-eval's pearson_delta, "
    "mse, mae, mse_delta, mae_delta, discrimination_score_l1, overlap_at_N — and write results.csv and "
    "agg_results.csv. NaNs are skipped in the aggregate and counted."
)


def add_parser(sub: Any, name: str, help_text: str) -> None:
    parser = sub.add_parser(name, help=help_text, description=DESCRIPTION)
    parser.add_argument(
        "pred_dir", metavar="PRED_DIR", help="Directory holding adata_pred.h5ad and adata_real.h5ad."
    )
    parser.add_argument(
        "--out", help="Where to write results.csv and agg_results.csv. Default: PRED_DIR/eval."
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="Replace an existing non-empty output directory."
    )
    parser.add_argument(
        "--control-label",
        help="Control label in the perturbation column. Default: uns['ptrag']['control_label'], else detect "
        "non-targeting, control, ctrl or NT.",
    )
    parser.add_argument(
        "--perturbation-column",
        default="target_gene",
        help="obs column holding the perturbation (default: target_gene).",
    )
    parser.add_argument(
        "--cell-type-column",
        default="cell_type",
        help="obs column holding the cell type (default: cell_type).",
    )
    parser.add_argument(
        "--n-pcs", type=int, default=50, help="Principal components for w1, w2 and w2_ot (default: 50)."
    )
    parser.add_argument(
        "--no-de",
        action="store_true",
        help="Skip the Wilcoxon DE test behind overlap_at_N (faster; the column is NaN).",
    )
    parser.add_argument("--seed", type=int, default=0, help="Seed of the randomised PCA (default: 0).")
    parser.set_defaults(func=run)


def _read(path: Path) -> Any:
    import anndata as ad

    from ptrag.errors import DataError

    if not path.is_file():
        raise DataError(
            f"{path} not found. PRED_DIR must hold adata_pred.h5ad and adata_real.h5ad (see ptrag predict)."
        )
    try:
        return ad.read_h5ad(path)
    except Exception as exc:  # h5py/anndata raise many types for a bad file
        raise DataError(
            f"Cannot read {path} as AnnData ({exc}). Re-run ptrag predict to rewrite it."
        ) from exc


def format_table(result: Any) -> str:
    agg = result.agg.loc[["mean", "median", "std", "nan_count"]].T
    agg["nan_count"] = agg["nan_count"].astype(int)
    return agg.to_string(float_format=lambda v: f"{v:.4g}")


def run(args: argparse.Namespace) -> int:
    from ptrag.evaluation import evaluate, write_results
    from ptrag.io import check_output_dir, staged_output

    pred_dir = Path(args.pred_dir)
    pred = _read(pred_dir / "adata_pred.h5ad")
    real = _read(pred_dir / "adata_real.h5ad")
    out = check_output_dir(args.out or pred_dir / "eval", overwrite=args.overwrite)
    result = evaluate(
        pred,
        real,
        control_label=args.control_label,
        pert_col=args.perturbation_column,
        celltype_col=args.cell_type_column,
        n_pcs=args.n_pcs,
        include_de=not args.no_de,
        seed=args.seed,
    )
    with staged_output(out, overwrite=args.overwrite) as staging:  # the old results stay until then
        written = write_results(result, staging)
    results_path, agg_path = (out / path.name for path in written)
    print(
        f"Scored {len(result.results)} (cell type, perturbation) conditions; "
        f"control label {result.control_label!r}."
    )
    print(format_table(result))
    skipped = {m: n for m, n in result.nan_counts.items() if n}
    print(
        "NaNs skipped per metric: "
        + (", ".join(f"{m}={n}" for m, n in skipped.items()) if skipped else "none")
    )
    print(f"Wrote {results_path} and {agg_path}")
    return 0
