"""Ridge regression with an unpenalised intercept, λ chosen by exact leave-one-out cross-validation.

Used by the ``linear`` reference (gene embedding → pseudobulk shift, one fit per cell type, in the
spirit of the linear baseline of Ahlmann-Eltze et al., Nature Methods 2025). For a fixed λ ridge is a
linear smoother ŷ = H y, so each leave-one-out residual is e_i / (1 − H_ii) exactly (no refits).
With the thin SVD X_c = U S Vᵀ of the centred inputs, H = 11ᵀ/n + U diag(s²/(s²+λ)) Uᵀ. The
criterion is the leave-one-out squared error summed over all outputs (genes). The grid is
log-spaced relative to ‖X_c‖²_F and ends with λ = ∞, the intercept-only model (the mean of the
training outputs), so cross-validation can say that the inputs do not help.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

__all__ = ["FloatArray", "fit_ridge_loo"]

FloatArray = NDArray[np.float64]
# λ / ‖X_c‖²_F from 1e-6 (almost interpolating) to 1e2 (almost the mean), then λ = ∞.
RELATIVE_GRID: tuple[float, ...] = (*np.logspace(-6.0, 2.0, 33).tolist(), float("inf"))


@dataclass(frozen=True)
class RidgeFit:
    """A fitted ridge map: predict(x) = intercept + (x − x_mean) @ coef."""

    x_mean: FloatArray  # (D,)
    intercept: FloatArray  # (G,): the mean training output
    coef: FloatArray  # (D, G); zeros when λ = ∞
    lam: float  # chosen λ (inf: intercept only)
    relative_lam: float  # λ / ‖X_c‖²_F
    loo_mse: float  # leave-one-out mean squared error at the chosen λ
    loo_mse_mean_only: float  # the same for the intercept-only model (λ = ∞)
    n_samples: int

    def predict(self, x: NDArray[np.floating]) -> FloatArray:
        x2 = np.atleast_2d(np.asarray(x, dtype=np.float64))
        return self.intercept[None, :] + (x2 - self.x_mean[None, :]) @ self.coef


def fit_ridge_loo(
    x: NDArray[np.floating], y: NDArray[np.floating], relative_grid: tuple[float, ...] = RELATIVE_GRID
) -> RidgeFit:
    """Fit ridge on (n, D) inputs and (n, G) outputs, choosing λ by exact leave-one-out error.

    Needs n ≥ 3 samples (with 2, every leave-one-out fit of the intercept-only model is one point).
    Ties in the criterion go to the larger λ (the simpler model).
    """
    x64 = np.asarray(x, dtype=np.float64)
    y64 = np.asarray(y, dtype=np.float64)
    n = x64.shape[0]
    if n < 3 or y64.shape[0] != n:
        raise ValueError(f"ridge needs at least 3 samples with matching outputs, got {n} and {y64.shape[0]}")
    x_mean = x64.mean(axis=0)
    y_mean = y64.mean(axis=0)
    xc = x64 - x_mean
    yc = y64 - y_mean
    u, s, vt = np.linalg.svd(xc, full_matrices=False)
    keep = s > s.max(initial=0.0) * 1e-10
    u, s, vt = u[:, keep], s[keep], vt[keep]
    scale = float((s**2).sum())
    projected = u.T @ yc  # (r, G)
    best = (np.inf, np.inf, np.zeros_like(s))  # (criterion, λ, shrink factors)
    mean_only = float(((yc * (n / (n - 1))) ** 2).mean())
    for relative in sorted(relative_grid, reverse=True):
        lam = relative * scale
        if not np.isfinite(lam) or scale == 0.0:
            criterion, factors = mean_only, np.zeros_like(s)
        else:
            factors = s**2 / (s**2 + lam)
            residual = yc - u @ (factors[:, None] * projected)
            leverage = 1.0 / n + (u**2) @ factors
            criterion = float(((residual / (1.0 - leverage)[:, None]) ** 2).mean())
        if criterion < best[0]:
            best = (criterion, lam if np.isfinite(lam) and scale > 0 else np.inf, factors)
    criterion, lam, factors = best
    if np.isfinite(lam):
        coef = vt.T @ ((factors / s)[:, None] * projected)
    else:
        coef = np.zeros((x64.shape[1], y64.shape[1]))
    return RidgeFit(
        x_mean=x_mean,
        intercept=y_mean,
        coef=coef,
        lam=float(lam),
        relative_lam=float(lam / scale) if np.isfinite(lam) and scale > 0 else float("inf"),
        loo_mse=criterion,
        loo_mse_mean_only=mean_only,
        n_samples=n,
    )
