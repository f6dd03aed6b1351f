"""The generative model's parameters: baselines, dispersions, batches and per-condition responses.

For cell line c, batch b and gene g the control cell's expected count is ``L * P[c, b, g]`` with
``L`` the cell's library size and ``P`` baseline proportions (per-gene log-normal, shifted per line
and per batch, normalised to sum to one). A perturbed cell multiplies it by
``exp(pi * D[condition, g])`` where ``D`` is the downstream log fold change and ``pi`` the cell's
response strength (0 for cells that escape), and the target gene itself by ``1 - knockdown``.

``D[p, c] = s_p * g_pc * (sum_k M[p, k] * a[k, c] * L[k, c] + I[p, c])``:
``M`` program membership from real annotation (``genes.py``), ``a`` program gain per line (zero when
the program is silent there), ``L`` program loadings over measured genes (a part shared by all lines,
a line-specific part, and a coherent shift of the program's own member genes), ``I`` an idiosyncratic
part (shared across lines in part), ``s_p`` the perturbation's strength (zero for null
perturbations) and ``g_pc`` a per-line jitter.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ptrag.simulation.genes import NON_COMPLEX_CATEGORIES, GeneSelection
from ptrag.simulation.presets import SimulationPreset

__all__ = ["THETA_LEVELS", "ScreenModel", "build_model"]

if TYPE_CHECKING:
    from ptrag.simulation.states import StateModel

# NB shapes (theta) are snapped to these levels so the truth can use precomputed expectations.
THETA_LEVELS: tuple[float, ...] = (1.5, 2.2, 3.2, 4.7, 6.8, 10.0, 15.0, 22.0, 33.0)


@dataclass
class ScreenModel:
    """All parameters needed to sample cells and to compute the true mean shifts."""

    selection: GeneSelection
    preset: SimulationPreset
    conditions: pd.DataFrame  # one row per (cell_line, perturbation); see build_model
    downstream_lfc: np.ndarray  # (n_conditions, n_genes) float32; the target's own column is 0
    proportions: np.ndarray  # (n_lines, n_batches, n_genes) float64, rows sum to 1
    batch_library_factor: np.ndarray  # (n_lines, n_batches)
    batch_names: np.ndarray  # (n_lines, n_batches) str, globally unique gem_group labels
    theta_level: np.ndarray  # (n_genes,) index into THETA_LEVELS
    program_loadings: np.ndarray | None = None  # (n_programs, n_lines, n_genes), gains applied
    states: StateModel | None = None  # per-cell basal state (states.py); None: responses ignore it

    @property
    def theta(self) -> np.ndarray:
        return np.asarray(THETA_LEVELS)[self.theta_level]

    @property
    def lines(self) -> tuple[str, ...]:
        return self.preset.cell_lines


def _sparse_effects(rng: np.random.Generator, n_genes: int, fraction: float, sd: float) -> np.ndarray:
    out = np.zeros(n_genes)
    k = max(1, round(fraction * n_genes))
    out[rng.choice(n_genes, size=k, replace=False)] = rng.normal(0.0, sd, size=k)
    return out


def _baselines(
    preset: SimulationPreset, selection: GeneSelection, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    n_genes = len(selection.measured)
    log_base = rng.normal(0.0, preset.baseline_sigma, size=n_genes)
    # CRISPRi screens target expressed genes: lift measured targets into the upper half.
    targets = set(selection.targets)
    is_target = np.array([g in targets for g in selection.measured])
    floor = np.quantile(log_base, 0.6)
    log_base[is_target] = np.maximum(log_base[is_target], floor + rng.normal(0.5, 0.5, size=is_target.sum()))
    n_lines, n_batches = len(preset.cell_lines), preset.n_batches_per_line
    line_shift = rng.normal(0.0, preset.line_baseline_sigma, size=(n_lines, 1, n_genes))
    batch_shift = rng.normal(0.0, preset.batch_gene_sigma, size=(n_lines, n_batches, n_genes))
    logits = log_base[None, None, :] + line_shift + batch_shift
    logits -= logits.max(axis=2, keepdims=True)
    proportions = np.exp(logits)
    proportions /= proportions.sum(axis=2, keepdims=True)
    library = np.exp(rng.normal(0.0, preset.batch_library_sigma, size=(n_lines, n_batches)))
    return proportions, library


def _dispersions(preset: SimulationPreset, n_genes: int, rng: np.random.Generator) -> np.ndarray:
    theta = np.exp(rng.normal(np.log(preset.dispersion_median), preset.dispersion_sigma, size=n_genes))
    return np.abs(np.log(theta)[:, None] - np.log(THETA_LEVELS)[None, :]).argmin(axis=1)


def _program_loadings(
    preset: SimulationPreset, selection: GeneSelection, rng: np.random.Generator
) -> np.ndarray:
    """(n_programs, n_lines, n_genes) loadings: shared + line-specific responders + member shift."""
    params = preset.response
    n_programs, n_lines, n_genes = (
        len(selection.program_names),
        len(preset.cell_lines),
        len(selection.measured),
    )
    rho = params.program_line_correlation
    loadings = np.zeros((n_programs, n_lines, n_genes))
    for k in range(n_programs):
        shared = _sparse_effects(rng, n_genes, params.responder_fraction, params.program_effect_sd)
        members = np.zeros(n_genes)
        idx = selection.program_member_genes[k]
        if len(idx):
            sign = rng.choice([-1.0, 1.0])
            members[idx] = sign * params.member_effect * np.exp(rng.normal(0.0, 0.3, size=len(idx)))
        for c in range(n_lines):
            specific = _sparse_effects(rng, n_genes, params.responder_fraction, params.program_effect_sd)
            loadings[k, c] = np.sqrt(rho) * shared + np.sqrt(1.0 - rho) * specific + members
    gains = np.exp(rng.normal(0.0, params.program_gain_sigma, size=(n_programs, n_lines)))
    gains[rng.random((n_programs, n_lines)) < params.program_silent_prob] = 0.0
    return loadings * gains[:, :, None]


def build_model(preset: SimulationPreset, selection: GeneSelection, rng: np.random.Generator) -> ScreenModel:
    """Draw every parameter of the screen from ``rng`` (deterministic for a seed)."""
    params = preset.response
    n_genes = len(selection.measured)
    proportions, library = _baselines(preset, selection, rng)
    theta_level = _dispersions(preset, n_genes, rng)
    loadings = _program_loadings(preset, selection, rng)

    n_targets = len(selection.targets)
    is_complex = np.array([c not in NON_COMPLEX_CATEGORIES for c in selection.target_category])
    null_prob = np.where(is_complex, params.null_prob_complex, params.null_prob_other)
    is_null = rng.random(n_targets) < null_prob
    strength = np.where(is_null, 0.0, np.exp(rng.normal(0.0, params.strength_sigma, size=n_targets)))
    idio_shared = np.stack(
        [_sparse_effects(rng, n_genes, params.idio_fraction, params.idio_effect_sd) for _ in range(n_targets)]
    )

    target_pos = {t: i for i, t in enumerate(selection.targets)}
    measured_pos = {g: i for i, g in enumerate(selection.measured)}
    rows: list[dict[str, object]] = []
    lfc_rows: list[np.ndarray] = []
    rho_i = params.idio_line_correlation
    for c, line in enumerate(preset.cell_lines):
        for target in selection.line_targets[line]:
            p = target_pos[target]
            idio_line = _sparse_effects(rng, n_genes, params.idio_fraction, params.idio_effect_sd)
            idio = np.sqrt(rho_i) * idio_shared[p] + np.sqrt(1.0 - rho_i) * idio_line
            program = selection.membership[p] @ loadings[:, c, :]
            jitter = np.exp(rng.normal(0.0, params.line_strength_sigma))
            lfc = np.clip(strength[p] * jitter * (program + idio), -params.max_abs_lfc, params.max_abs_lfc)
            target_index = measured_pos.get(target, -1)
            if target_index >= 0:
                lfc[target_index] = 0.0  # the knockdown replaces any downstream effect on the target
            lfc_rows.append(lfc.astype(np.float32))
            rows.append(
                {
                    "cell_line": line,
                    "perturbation": target,
                    "category": selection.target_category[p],
                    "null_by_design": bool(is_null[p]),
                    "strength": float(strength[p] * jitter),
                    "knockdown": float(rng.uniform(*params.knockdown_range)),
                    "escape_fraction": float(rng.uniform(*params.escape_range)),
                    "target_measured_index": target_index,
                }
            )
    conditions = pd.DataFrame(rows)
    batch_names = np.array(
        [
            [str(c * preset.n_batches_per_line + b + 1) for b in range(preset.n_batches_per_line)]
            for c in range(len(preset.cell_lines))
        ]
    )
    return ScreenModel(
        selection=selection,
        preset=preset,
        conditions=conditions,
        downstream_lfc=np.stack(lfc_rows) if lfc_rows else np.zeros((0, n_genes), np.float32),
        proportions=proportions,
        batch_library_factor=library,
        batch_names=batch_names,
        theta_level=theta_level,
        program_loadings=loadings,
    )
