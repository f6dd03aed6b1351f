"""Write a prediction directory: cell-eval's adata files plus the retrieval record."""

from __future__ import annotations

from pathlib import Path

from ptrag.io import atomic_path, h5ad_strings, staged_output
from ptrag.prediction.predict import Prediction


def write_prediction_files(prediction: Prediction, directory: Path) -> None:
    """adata_pred.h5ad, adata_real.h5ad (held-out groups only) and retrieval.csv into ``directory``."""
    with h5ad_strings():
        with atomic_path(directory / "adata_pred.h5ad") as tmp:
            prediction.adata_pred.write_h5ad(tmp)
        if prediction.adata_real is not None:
            with atomic_path(directory / "adata_real.h5ad") as tmp:
                prediction.adata_real.write_h5ad(tmp)
    if not prediction.retrieval.empty:
        with atomic_path(directory / "retrieval.csv") as tmp:
            prediction.retrieval.to_csv(tmp, index=False)


def write_prediction(prediction: Prediction, out_dir: str | Path, overwrite: bool = False) -> Path:
    """Write into a staging directory that replaces ``out_dir`` only once every file is complete."""
    with staged_output(out_dir, overwrite=overwrite) as staging:
        write_prediction_files(prediction, staging)
    return Path(out_dir)
