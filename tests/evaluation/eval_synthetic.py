"""Small synthetic prediction pairs in ptrag's prediction-output contract."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd

CONTROL = "non-targeting"


def make_pair(
    seed: int = 0,
    cell_types: tuple[str, ...] = ("k562",),
    n_perts: int = 6,
    n_cells: int = 20,
    n_controls: int = 40,
    n_genes: int = 30,
    pred_effect_scale: float = 0.5,
    pred_noise: float = 1.0,
    swap_first_two: bool = False,
) -> tuple[ad.AnnData, ad.AnnData]:
    """(pred, real): real perturbed cells carry a per-perturbation shift; pred carries a damped one.

    ``swap_first_two`` gives the first two perturbations each other's predicted shift, so that a
    discrimination score has something to miss.
    """
    rng = np.random.default_rng(seed)
    genes = [f"GENE{i}" for i in range(n_genes)]
    perts = genes[:n_perts]  # perturbations target measured genes, as in CRISPRi screens
    real_blocks, pred_blocks, obs = [], [], []
    for cell_type in cell_types:
        base = rng.gamma(2.0, 0.5, n_genes)
        controls = np.log1p(rng.poisson(base, (n_controls, n_genes))).astype(np.float32)
        real_blocks.append(controls)
        pred_blocks.append(controls)
        obs += [(cell_type, CONTROL, "b0")] * n_controls
        shifts = [rng.normal(0, 1.0, n_genes) * (rng.random(n_genes) < 0.3) for _ in perts]
        pred_shifts = list(shifts)
        if swap_first_two:
            pred_shifts[0], pred_shifts[1] = shifts[1], shifts[0]
        for p, shift, predicted_shift in zip(perts, shifts, pred_shifts, strict=True):
            rate = np.clip(base * np.exp(shift), 0, None)
            real_blocks.append(np.log1p(rng.poisson(rate, (n_cells, n_genes))).astype(np.float32))
            pred_rate = np.clip(base * np.exp(pred_effect_scale * predicted_shift), 0, None)
            pred = np.log1p(rng.poisson(pred_rate, (n_cells, n_genes))) * pred_noise
            pred_blocks.append(pred.astype(np.float32))
            obs += [(cell_type, p, "b0")] * n_cells
    frame = pd.DataFrame(obs, columns=["cell_type", "target_gene", "batch"])
    frame.index = [f"cell{i}" for i in range(len(frame))]
    var = pd.DataFrame(index=genes)
    real = ad.AnnData(np.vstack(real_blocks), obs=frame, var=var)
    pred_obs = frame.copy()
    pred_obs["control_barcode"] = frame.index
    pred = ad.AnnData(np.vstack(pred_blocks), obs=pred_obs, var=var.copy())
    for adata, arm in ((real, "real"), (pred, "test-arm")):
        adata.uns["ptrag"] = {"control_label": CONTROL, "split": "test", "arm": arm}
    return pred, real
