"""pandas ≥ 3 stores every str column and index as a string array, which anndata refuses to write by
default. Simulated screens and prediction files must still be written (found on a machine with pandas 3)."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd

from ptrag.data.loading import load_dataset
from ptrag.prediction.predict import Prediction
from ptrag.prediction.write import write_prediction


def test_simulated_screen_and_predictions_write_with_pandas3_strings(tmp_path) -> None:
    from ptrag.simulation import simulate

    with pd.option_context("future.infer_string", True):
        result = simulate("tiny", seed=0, out_dir=tmp_path / "screen")
        obs = pd.DataFrame({"target_gene": ["A", "B"], "cell_type": ["k562", "k562"]}, index=["c0", "c1"])
        assert isinstance(obs.index.dtype, pd.StringDtype)
        adata = ad.AnnData(X=np.ones((2, 3), np.float32), obs=obs)
        adata.var_names = pd.Index(["g0", "g1", "g2"])
        write_prediction(Prediction(adata, adata.copy(), pd.DataFrame()), tmp_path / "pred")
    dataset = load_dataset(result.data_path)
    assert dataset.n_cells == result.n_cells
    back = ad.read_h5ad(tmp_path / "pred" / "adata_pred.h5ad")
    assert list(back.obs_names) == ["c0", "c1"] and list(back.obs["target_gene"]) == ["A", "B"]
