"""``ptrag evaluate PRED_DIR``: score adata_pred.h5ad against adata_real.h5ad (cell-eval file names)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ptrag.cli.common import add_progress_option
from ptrag.keys import BATCH_COL, PERT_COL, UNS_KEY

__all__ = ["DESCRIPTION", "add_parser", "run"]

DESCRIPTION = (
    "Read PRED_DIR/adata_pred.h5ad and PRED_DIR/adata_real.h5ad (identical var_names, same "
    "(cell type, perturbation) conditions, control cells in both), compute every metric per "
    "(cell type, perturbation) — w1, w2, w2_ot, energy_pca, mmd_pca (per PC of PCA-50, as gge-eval), "
    "energy_gene, energy_gene_unbiased, mmd_gene (gene space), sd_ratio and cell-eval's pearson_delta, "
    "mse, mae, discrimination_score_l1, overlap_at_N — and write results.csv and agg_results.csv; "
    "gene_spread.csv and gene_spread.png compare the predicted and real cells' spread gene by gene "
    "(within-condition SDs, their ratio, and how much the perturbations move each gene). "
    "NaNs are skipped in the aggregate and counted. References are scored beside the method with the "
    "same PCA: control and noise_floor always, and train_mean, perturb_shift, knn_shift and linear when "
    "PRED_DIR/references.npz exists (ptrag predict writes it for split groups), then evidence_only (the "
    "memory arm's untrained start) and the diagnostic row <arm>_mean_on_controls: the method's own mean "
    "shift on the same real control cells (if the method loses to it, its generated cells hurt). Each gets "
    "OUT/references/<name>/results.csv and agg_results.csv; OUT/references/details.csv says how each "
    "shift was made; OUT/comparison.csv holds every metric's mean for the method and each reference, "
    "and a short form of it is printed."
)


def add_parser(sub: Any, name: str, help_text: str) -> None:
    parser = sub.add_parser(name, help=help_text, description=DESCRIPTION)
    parser.add_argument(
        "pred_dir", metavar="PRED_DIR", help="Directory holding adata_pred.h5ad and adata_real.h5ad."
    )
    parser.add_argument(
        "--out",
        help="Where to write results.csv, agg_results.csv, gene_spread.csv/.png, comparison.csv and "
        "references/. "
        "Default: PRED_DIR/eval.",
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
        default=PERT_COL,
        help="obs column holding the perturbation (default: target_gene).",
    )
    parser.add_argument(
        "--cell-type-column",
        default="cell_type",
        help="obs column holding the cell type (default: cell_type).",
    )
    parser.add_argument(
        "--batch-column",
        default=BATCH_COL,
        help="obs column holding the batch (default: batch). The references' control cells are "
        "re-centred on the control means of each condition's batches, as ptrag's models are; "
        "without the column, on the cell type's whole control pool.",
    )
    parser.add_argument(
        "--n-pcs",
        type=int,
        default=50,
        help="Principal components for w1, w2, w2_ot, energy_pca and mmd_pca (default: 50).",
    )
    parser.add_argument(
        "--no-de",
        action="store_true",
        help="Skip the Wilcoxon DE test behind overlap_at_N (faster; the column is NaN).",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="Seed of the randomised PCA and of the references' draws (default: 0).",
    )
    parser.add_argument(
        "--no-references", action="store_true", help="Score the method only, without the references."
    )
    add_progress_option(parser)
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


def _score_references(
    args: argparse.Namespace, pred_dir: Path, pred: Any, real: Any, result: Any, pca: Any
) -> tuple[dict[str, Any], Any]:
    """Every reference PRED_DIR allows, scored with the method's PCA, and the shifts' details."""
    from ptrag.evaluation import REFERENCE_FILE, ReferenceShifts, evaluate_references

    if args.no_references:
        return {}, None
    if args.cell_type_column not in real.obs.columns:
        print(f"References skipped: adata_real has no {args.cell_type_column!r} column.")
        return {}, None
    path = pred_dir / REFERENCE_FILE
    shifts = ReferenceShifts.load(path) if path.is_file() else None
    if shifts is None:
        print(
            f"No {REFERENCE_FILE} in {pred_dir}: scoring control, noise_floor and the method's "
            "_mean_on_controls only."
        )
    return evaluate_references(
        real,
        result.control_label,
        shifts=shifts,
        pca=pca,
        pert_col=args.perturbation_column,
        celltype_col=args.cell_type_column,
        seed=args.seed,
        include_de=not args.no_de,
        prediction=pred,
        method=_method_name(pred),
        batch_col=args.batch_column,
    ), (shifts.details if shifts is not None else None)


def _method_name(pred: Any) -> str:
    return str(pred.uns.get(UNS_KEY, {}).get("arm", "prediction"))


def run(args: argparse.Namespace) -> int:
    from ptrag.evaluation import (
        comparison_table,
        evaluate,
        fit_pca_on_real,
        write_reference_results,
        write_results,
    )
    from ptrag.evaluation.metric_registry import metrics_where
    from ptrag.evaluation.reference_report import COMPARISON_FILE
    from ptrag.evaluation.spread import SPREAD_FILE, format_spread_summary, spread_summary
    from ptrag.io import atomic_write_text, check_output_dir, staged_output
    from ptrag.report.spread_figure import SPREAD_FIGURE, write_spread_figure

    pred_dir = Path(args.pred_dir)
    pred = _read(pred_dir / "adata_pred.h5ad")
    real = _read(pred_dir / "adata_real.h5ad")
    out = check_output_dir(args.out or pred_dir / "eval", overwrite=args.overwrite)
    pca = fit_pca_on_real(real, n_pcs=args.n_pcs, seed=args.seed)
    result = evaluate(
        pred,
        real,
        control_label=args.control_label,
        pert_col=args.perturbation_column,
        celltype_col=args.cell_type_column,
        pca=pca,
        include_de=not args.no_de,
        seed=args.seed,
    )
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
    spread = result.gene_spread
    assert spread is not None  # evaluate() always computes it
    print(format_spread_summary(spread_summary(spread)))
    references, details = _score_references(args, pred_dir, pred, real, result, pca)
    table = None
    # Everything is written into a staging directory that replaces --out only when complete.
    with staged_output(out, overwrite=args.overwrite) as staging:
        written = (
            *write_results(result, staging),
            staging / SPREAD_FILE,
            staging / SPREAD_FIGURE,
        )
        atomic_write_text(staging / SPREAD_FILE, spread.to_csv())
        title = f"{_method_name(pred)}: per-gene spread over {spread.attrs.get('n_conditions', 0)} conditions"
        write_spread_figure(spread, staging / SPREAD_FIGURE, title)
        if references:
            write_reference_results(references, staging, details)
            table = comparison_table(_method_name(pred), result, references)
            atomic_write_text(staging / COMPARISON_FILE, table.to_csv(index=False))
    print(f"Wrote {', '.join(str(out / path.name) for path in written)}")
    if table is not None:
        shown = ["method", *[m for m in metrics_where("headline") if m in table.columns]]
        print("\nMean over conditions, method and references (same PCA, same real cells):")
        print(table[shown].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
        print(f"Wrote {out / 'references'}/<name>/results.csv, agg_results.csv and {out / COMPARISON_FILE}")
    return 0
