"""The true mean log1p-normalised expression of every condition, by deterministic quadrature.

A cell's normalised value for gene g is ``log1p(1e4 * K_g / total)``. Its expectation is taken
exactly over the negative-binomial count ``K_g`` (a precomputed table of
``E[log1p(c * K)]`` for ``K ~ NB(mean m, shape theta)`` on a fine grid of ``log m`` and ``log c``,
bilinear interpolation) and by quadrature over the library size (Gauss-Hermite on its log-normal),
the per-cell response strength (Gauss-Laguerre on its Gamma, plus the escaping cells' point mass at
zero), the batches of the line (weighted by how cells are spread over them) and, for presets with a
basal state, that state (Gauss-Jacobi on its Beta law; ``conditional_shifts`` fixes it instead).
The per-cell total is replaced by its expectation ``L * f_b * S`` where ``S`` is the condition's
relative total; its Poisson/Gamma noise changes ``log`` by well under 1% at realistic library sizes.
The tests check the result against Monte-Carlo means of sampled cells.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import numpy as np
from scipy import special

from ptrag.simulation.model import THETA_LEVELS, ScreenModel
from ptrag.simulation.states import state_nodes

__all__ = ["TARGET_SUM", "conditional_shifts", "true_shifts"]

TARGET_SUM = 1e4
_LOG_M = np.linspace(np.log(1e-4), np.log(5e4), 300)
_LOG_C = np.linspace(np.log(0.02), np.log(60.0), 48)
_N_LIBRARY_NODES = 5
_N_STRENGTH_NODES = 5


def _count_bins(max_count: float) -> tuple[np.ndarray, np.ndarray]:
    """Count points and their widths: every integer up to 1,000, then 0.2%-wide bins.

    The NB pmf and log1p are smooth beyond 1,000, so one point per bin times its width is exact to
    well below 1e-4.
    """
    exact = np.arange(0, 1000, dtype=np.float64)
    edges = 999.5 * np.exp(np.arange(0, int(np.log(max_count / 999.5) / 0.002) + 2) * 0.002)
    centres = (edges[:-1] + edges[1:]) / 2
    return np.concatenate([exact, centres]), np.concatenate([np.ones_like(exact), np.diff(edges)])


@lru_cache(maxsize=1)
def expectation_table() -> np.ndarray:
    """``T[theta_level, i, j] = E[log1p(exp(_LOG_C[j]) * K)]``, ``K ~ NB(exp(_LOG_M[i]), theta)``."""
    means = np.exp(_LOG_M)[:, None]
    top = means.max()
    counts, widths = _count_bins(top + 14 * np.sqrt(top + top * top / min(THETA_LEVELS)) + 40)
    log_values = np.log1p(np.outer(counts, np.exp(_LOG_C)))
    table = np.empty((len(THETA_LEVELS), len(_LOG_M), len(_LOG_C)))
    for t, theta in enumerate(THETA_LEVELS):
        log_norm = special.gammaln(counts + theta) - special.gammaln(theta) - special.gammaln(counts + 1)
        log_pmf = (
            log_norm[None, :]
            + theta * np.log(theta / (theta + means))
            + counts[None, :] * np.log(means / (theta + means))
        )
        table[t] = (np.exp(log_pmf) * widths[None, :]) @ log_values
    return table


def expected_log1p(mean_count: np.ndarray, scale: np.ndarray, theta_level: np.ndarray) -> np.ndarray:
    """E[log1p(scale * K)] for K ~ NB(mean_count, THETA_LEVELS[theta_level]); arrays broadcast."""
    table = expectation_table()
    n_m, n_c = len(_LOG_M), len(_LOG_C)
    flat = table.reshape(-1)
    mean_count = np.maximum(mean_count, 1e-12)
    du, dv = _LOG_M[1] - _LOG_M[0], _LOG_C[1] - _LOG_C[0]
    pos_u = (np.log(mean_count) - _LOG_M[0]) / du
    # Below the grid E[log1p(cK)] is linear in the mean (only K = 0 or 1 matter): scale it down.
    below = np.minimum(np.exp(np.minimum(pos_u, 0.0) * du), 1.0)
    pos_u = np.clip(pos_u, 0.0, n_m - 1 - 1e-9)
    pos_v = np.clip((np.log(scale) - _LOG_C[0]) / dv, 0.0, n_c - 1 - 1e-9)
    i0, j0 = pos_u.astype(np.int64), pos_v.astype(np.int64)
    fu, fv = pos_u - i0, pos_v - j0
    base = theta_level * (n_m * n_c) + i0 * n_c + j0
    value = (
        (1 - fu) * (1 - fv) * flat[base]
        + (1 - fu) * fv * flat[base + 1]
        + fu * (1 - fv) * flat[base + n_c]
        + fu * fv * flat[base + n_c + 1]
    )
    return value * below


def _library_nodes(model: ScreenModel) -> tuple[np.ndarray, np.ndarray]:
    z, w = np.polynomial.hermite_e.hermegauss(_N_LIBRARY_NODES)
    preset = model.preset
    return preset.median_library_size * np.exp(preset.library_size_sigma * z), w / w.sum()


def _strength_nodes(model: ScreenModel) -> tuple[np.ndarray, np.ndarray]:
    shape = model.preset.response.strength_shape
    x, w = special.roots_genlaguerre(_N_STRENGTH_NODES, shape - 1.0)
    return x / shape, w / w.sum()


def _state_props(model: ScreenModel, line_index: int, batch: int, state: float | None) -> np.ndarray:
    props = model.proportions[line_index, batch]
    if state is None or model.states is None:
        return props
    return props * model.states.expression_factor(line_index, state)


def expected_control(
    model: ScreenModel, line_index: int, batch_weights: np.ndarray, state: float | None = None
) -> np.ndarray:
    """Expected log1p-normalised expression of the control cells of one line, shape (n_genes,).

    ``state``: the control cells of that basal state (presets with states), else every cell.
    """
    if state is None and model.states is not None:
        return _over_states(model, lambda s: expected_control(model, line_index, batch_weights, s))
    libraries, lib_w = _library_nodes(model)
    out = np.zeros(model.proportions.shape[2])
    for b, wb in enumerate(batch_weights):
        if wb == 0:
            continue
        props = _state_props(model, line_index, b, state)
        total = props.sum() if state is not None else 1.0  # state-free proportions sum to 1
        for lib, wl in zip(libraries * model.batch_library_factor[line_index, b], lib_w, strict=True):
            scale = np.full_like(props, TARGET_SUM / (lib * total))
            out += wb * wl * expected_log1p(lib * props, scale, model.theta_level)
    return out


def _over_states(model: ScreenModel, at_state: Callable[[float], np.ndarray]) -> np.ndarray:
    """The expectation over the basal state s (Gauss-Jacobi quadrature of its Beta law)."""
    assert model.states is not None
    nodes, weights = state_nodes(model.states.params)
    return sum((w * at_state(float(s)) for s, w in zip(nodes, weights, strict=True)), start=np.zeros(1))


def expected_perturbed(
    model: ScreenModel,
    condition_index: np.ndarray,
    line_index: int,
    batch_weights: np.ndarray,
    state: float | None = None,
) -> np.ndarray:
    """Expected log1p-normalised expression for conditions of one line, shape (n, n_genes).

    ``state``: the cells of that basal state (presets with states), else every cell.
    """
    if state is None and model.states is not None:
        return _over_states(
            model, lambda s: expected_perturbed(model, condition_index, line_index, batch_weights, s)
        )
    conditions = model.conditions.iloc[condition_index]
    lfc = model.downstream_lfc[condition_index].astype(np.float64)
    n, n_genes = lfc.shape
    knock = np.zeros((n, n_genes))
    target = conditions["target_measured_index"].to_numpy()
    has_target = target >= 0
    knock[np.nonzero(has_target)[0], target[has_target]] = np.log1p(
        -conditions["knockdown"].to_numpy()[has_target]
    )
    escape = conditions["escape_fraction"].to_numpy()[:, None]
    libraries, lib_w = _library_nodes(model)
    strengths, strength_w = _strength_nodes(model)
    if state is not None and model.states is not None:
        lfc = model.states.downstream(lfc, condition_index, state)
        escape = model.states.escape_probability(escape, state)
        strengths = strengths * model.states.strength_factor(state)
    # Strength node 0 is the escaping cells (no downstream response, knockdown still applies).
    nodes = [(0.0, escape)] + [(s, (1.0 - escape) * w) for s, w in zip(strengths, strength_w, strict=True)]
    out = np.zeros((n, n_genes))
    for b, wb in enumerate(batch_weights):
        if wb == 0:
            continue
        props = _state_props(model, line_index, b, state)[None, :]
        for strength, w_strength in nodes:
            relative = props * np.exp(strength * lfc + knock)
            total_factor = relative.sum(axis=1, keepdims=True)
            for lib, wl in zip(libraries * model.batch_library_factor[line_index, b], lib_w, strict=True):
                value = expected_log1p(
                    lib * relative, TARGET_SUM / (lib * total_factor), model.theta_level[None, :]
                )
                out += wb * wl * w_strength * value
    return out


def conditional_shifts(
    model: ScreenModel, condition_index: np.ndarray, line_index: int, batch_weights: np.ndarray,
    states: np.ndarray,
) -> np.ndarray:
    """E[perturbed | s] − E[control | s] for conditions of one line at each basal state s.

    Shape (len(states), n, n_genes): the shift a cell of state s is expected to show (presets with
    states; the oracle in ``oracle.py`` interpolates it between grid states).
    """
    out = np.zeros((len(states), len(condition_index), model.downstream_lfc.shape[1]))
    for i, s in enumerate(states):
        control = expected_control(model, line_index, batch_weights, float(s))
        out[i] = expected_perturbed(model, condition_index, line_index, batch_weights, float(s)) - control
    return out


def true_shifts(model: ScreenModel, batch_weights: np.ndarray, chunk: int = 64) -> np.ndarray:
    """Expected perturbed minus expected control log1p expression, (n_conditions, n_genes) float32.

    ``batch_weights[line]`` is the share of the line's cells in each batch.
    """
    out = np.zeros(model.downstream_lfc.shape, dtype=np.float32)
    lines = model.conditions["cell_line"].to_numpy()
    for c, line in enumerate(model.lines):
        control = expected_control(model, c, batch_weights[c])
        rows = np.nonzero(lines == line)[0]
        for start in range(0, len(rows), chunk):
            idx = rows[start : start + chunk]
            out[idx] = expected_perturbed(model, idx, c, batch_weights[c]) - control[None, :]
    return out
