"""Write a prediction directory: cell-eval's adata files plus the retrieval record."""

from __future__ import annotations

from pathlib import Path

from ptrag.io import atomic_path, h5ad_strings, staged_output
from ptrag.prediction.predict import Prediction


def write_prediction(prediction: Prediction, out_dir: str | Path, overwrite: bool = False) -> Path:
    """Write into a staging directory that replaces ``out_dir`` only once every file is complete."""
    with staged_output(out_dir, overwrite=overwrite) as staging:
        with h5ad_strings():
            with atomic_path(staging / "adata_pred.h5ad") as tmp:
                prediction.adata_pred.write_h5ad(tmp)
            if prediction.adata_real is not None:
                with atomic_path(staging / "adata_real.h5ad") as tmp:
                    prediction.adata_real.write_h5ad(tmp)
        if not prediction.retrieval.empty:
            with atomic_path(staging / "retrieval.csv") as tmp:
                prediction.retrieval.to_csv(tmp, index=False)
    return Path(out_dir)
