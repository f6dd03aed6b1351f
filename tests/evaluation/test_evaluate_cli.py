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
