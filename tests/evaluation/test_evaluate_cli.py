"""``ptrag evaluate PRED_DIR``: files, printed table, and clear errors."""

from __future__ import annotations

import pandas as pd
from eval_synthetic import make_pair

from ptrag.cli.main import main


def _write(tmp_path, pred, real):
    pred_dir = tmp_path / "pred"
    pred_dir.mkdir()
    pred.write_h5ad(pred_dir / "adata_pred.h5ad")
    real.write_h5ad(pred_dir / "adata_real.h5ad")
    return pred_dir


def test_evaluate_writes_results_and_prints_the_table(tmp_path, capsys):
    pred, real = make_pair(cell_types=("k562", "rpe1"), n_perts=3)
    pred_dir = _write(tmp_path, pred, real)
    out = tmp_path / "eval"
    assert main(["evaluate", str(pred_dir), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    results = pd.read_csv(out / "results.csv")
    agg = pd.read_csv(out / "agg_results.csv").set_index("statistic")
    assert len(results) == 6
    assert f"{agg.loc['mean', 'w1']:.4g}" in printed
    assert "NaNs skipped per metric: none" in printed
    spread = pd.read_csv(out / "gene_spread.csv", index_col="gene")
    assert list(spread.index) == list(real.var_names)
    assert {"sd_pred", "sd_real", "sd_ratio", "effect", "moved"} <= set(spread.columns)
    assert f"{spread['sd_ratio'].median():.3f}" in printed and "per-gene SD, predicted / real" in printed
    assert (out / "gene_spread.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # A second run refuses to overwrite without --overwrite.
    assert main(["evaluate", str(pred_dir), "--out", str(out)]) == 2
    assert main(["evaluate", str(pred_dir), "--out", str(out), "--overwrite", "--no-de"]) == 0


def test_evaluate_names_the_mismatched_genes(tmp_path, capsys):
    pred, real = make_pair()
    pred.var_names = ["RENAMED", *pred.var_names[1:]]
    pred_dir = _write(tmp_path, pred, real)
    assert main(["evaluate", str(pred_dir)]) == 2
    err = capsys.readouterr().err
    assert "RENAMED" in err and "GENE0" in err


def test_evaluate_reports_a_missing_file(tmp_path, capsys):
    pred, real = make_pair()
    pred_dir = _write(tmp_path, pred, real)
    (pred_dir / "adata_pred.h5ad").unlink()
    assert main(["evaluate", str(pred_dir), "--out", str(tmp_path / "o")]) == 2
    assert "adata_pred.h5ad" in capsys.readouterr().err


def _write_references(pred_dir, real) -> None:
    import numpy as np

    from ptrag.evaluation import REFERENCE_FILE, SHIFT_REFERENCES, ReferenceShifts
    from ptrag.evaluation.reference_shifts import conditions_of

    conditions = tuple(conditions_of(real, "non-targeting"))
    shifts = {
        name: np.full((len(conditions), real.n_vars), 0.05 * i, np.float32)
        for i, name in enumerate(SHIFT_REFERENCES)
    }
    details = pd.DataFrame(
        [(name, c, p, "test", "") for name in shifts for c, p in conditions],
        columns=["reference", "cell_type", "perturbation", "source", "detail"],
    )
    ReferenceShifts(tuple(real.var_names), conditions, shifts, details).save(pred_dir / REFERENCE_FILE)


def test_evaluate_scores_every_reference_beside_the_method(tmp_path, capsys):
    pred, real = make_pair(cell_types=("k562", "rpe1"), n_perts=3)
    pred_dir = _write(tmp_path, pred, real)
    _write_references(pred_dir, real)
    assert main(["evaluate", str(pred_dir), "--no-de"]) == 0
    printed = capsys.readouterr().out
    out = pred_dir / "eval"
    names = [
        "control", "train_mean", "perturb_shift", "knn_shift", "linear", "linear_text", "linear_go",
        "linear_coexpression", "evidence_only", "noise_floor", "test-arm_mean_on_controls",
    ]
    for name in names:
        results = pd.read_csv(out / "references" / name / "results.csv")
        assert len(results) == 6, name
        assert (out / "references" / name / "agg_results.csv").is_file()
    assert len(pd.read_csv(out / "references" / "details.csv")) == 8 * 6  # 8 shift references
    comparison = pd.read_csv(out / "comparison.csv")
    assert list(comparison["method"]) == ["test-arm", *names]
    assert list(comparison["kind"]) == ["method"] + ["reference"] * 10 + ["diagnostic"]
    control_agg = pd.read_csv(out / "references" / "control" / "agg_results.csv").set_index("statistic")
    control_energy = control_agg.loc["mean", "energy_gene"]
    assert comparison.set_index("method").loc["control", "energy_gene"] == control_energy
    assert "perturb_shift" in printed and "noise_floor" in printed
    assert f"{control_agg.loc['mean', 'energy_gene']:.4g}" in printed


def test_evaluate_without_a_references_file_scores_control_noise_floor_and_own_mean_only(tmp_path, capsys):
    pred, real = make_pair(n_perts=3)
    pred_dir = _write(tmp_path, pred, real)
    assert main(["evaluate", str(pred_dir), "--no-de"]) == 0
    assert "No references.npz" in capsys.readouterr().out
    assert sorted(p.name for p in (pred_dir / "eval" / "references").iterdir()) == [
        "control", "noise_floor", "test-arm_mean_on_controls"
    ]
    assert main(["evaluate", str(pred_dir), "--no-de", "--no-references", "--out", str(tmp_path / "o")]) == 0
    assert not (tmp_path / "o" / "references").exists()
    assert not (tmp_path / "o" / "comparison.csv").exists()
