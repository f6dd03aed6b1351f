"""Cells: which condition, batch, library size and response strength each cell has, and its counts.

The cell design (one row per cell) is small and drawn up front; counts are drawn chunk by chunk
from independent random streams so a million-cell screen never holds all counts in memory.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ptrag.simulation.model import ScreenModel

__all__ = [
    "CONTROL_LABEL",
    "STATE_COLUMN",
    "TARGET_SUM",
    "EncodedChunk",
    "design_cells",
    "encode_chunk",
    "normalise",
    "sample_counts",
]

CONTROL_LABEL = "non-targeting"
STATE_COLUMN = "sim_state"  # obs column of the true basal state (presets with states); models ignore it
TARGET_SUM = 1e4
_COUNT_STREAM = 7_919  # separates the count streams from the design stream of the same seed


@dataclass
class CellDesign:
    """Per-cell parameters, in the order cells are written."""

    obs: pd.DataFrame  # gene, cell_line, gem_group (categoricals), index = cell names
    condition: np.ndarray  # index into model.conditions, -1 for controls
    line_index: np.ndarray
    batch_index: np.ndarray
    library_size: np.ndarray  # expected total UMIs over the measured genes (before the response)
    strength: np.ndarray  # per-cell response strength; 0 for escaping cells and controls
    state: np.ndarray | None = None  # per-cell basal state s in [0, 1] (presets with StateParams)

    @property
    def n_cells(self) -> int:
        return len(self.condition)


def design_cells(model: ScreenModel, rng: np.random.Generator) -> CellDesign:
    """Draw cell counts per condition, controls per line, batches, library sizes and strengths."""
    preset = model.preset
    lo, hi = preset.cells_per_perturbation
    conditions = model.conditions
    cond_parts, line_parts = [], []
    for c, line in enumerate(preset.cell_lines):
        rows = np.nonzero(conditions["cell_line"].to_numpy() == line)[0]
        per_condition = rng.integers(lo, hi + 1, size=len(rows))
        n_controls = max(
            1, round(per_condition.sum() * preset.control_fraction / (1 - preset.control_fraction))
        )
        cond = np.concatenate([np.repeat(rows, per_condition), np.full(n_controls, -1)])
        cond_parts.append(rng.permutation(cond))
        line_parts.append(np.full(len(cond), c))
    condition = np.concatenate(cond_parts)
    line_index = np.concatenate(line_parts)
    n = len(condition)
    batch_index = rng.integers(0, preset.n_batches_per_line, size=n)
    library = (
        preset.median_library_size
        * model.batch_library_factor[line_index, batch_index]
        * np.exp(rng.normal(0.0, preset.library_size_sigma, size=n))
    )
    params = preset.response
    states = model.states
    state = None if states is None else states.draw(rng, n)
    escape = np.where(condition >= 0, conditions["escape_fraction"].to_numpy()[np.maximum(condition, 0)], 1.0)
    if states is not None:
        escape = np.where(condition >= 0, states.escape_probability(escape, state), 1.0)
    responds = rng.random(n) >= escape
    strength = np.where(responds, rng.gamma(params.strength_shape, 1.0 / params.strength_shape, size=n), 0.0)
    if states is not None:
        strength = strength * states.strength_factor(state)

    perturbation_names = conditions["perturbation"].to_numpy()
    gene = np.where(condition >= 0, perturbation_names[np.maximum(condition, 0)], CONTROL_LABEL)
    lines = np.asarray(preset.cell_lines)[line_index]
    batches = model.batch_names[line_index, batch_index]
    width = len(str(n))
    obs = pd.DataFrame(
        {
            "gene": pd.Categorical(gene),
            "cell_line": pd.Categorical(lines, categories=list(preset.cell_lines)),
            "gem_group": pd.Categorical(batches, categories=list(model.batch_names.reshape(-1))),
        },
        index=pd.Index([f"cell{i:0{width}d}" for i in range(n)]),
    )
    if state is not None:
        obs[STATE_COLUMN] = state.astype(np.float32)  # the truth, for oracles and tests only
    return CellDesign(obs, condition, line_index, batch_index, library, strength, state)


def sample_counts(
    model: ScreenModel, design: CellDesign, start: int, stop: int, seed: int, chunk_id: int
) -> np.ndarray:
    """Negative-binomial counts (Gamma-Poisson) of cells ``start:stop``, int32 (n, n_genes)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, _COUNT_STREAM, chunk_id]))
    cells = slice(start, stop)
    condition = design.condition[cells]
    lfc = np.zeros((len(condition), model.downstream_lfc.shape[1]), dtype=np.float64)
    perturbed = condition >= 0
    downstream = model.downstream_lfc[condition[perturbed]]
    if model.states is not None and design.state is not None:
        s = design.state[cells][perturbed, None]
        downstream = model.states.downstream(downstream, condition[perturbed], s)
    lfc[perturbed] = downstream * design.strength[cells][perturbed, None]
    targets = model.conditions["target_measured_index"].to_numpy()
    knockdown = model.conditions["knockdown"].to_numpy()
    rows = np.nonzero(perturbed)[0]
    cell_targets = targets[condition[rows]]
    measured = cell_targets >= 0
    lfc[rows[measured], cell_targets[measured]] = np.log1p(-knockdown[condition[rows[measured]]])
    mean = (
        design.library_size[cells, None]
        * model.proportions[design.line_index[cells], design.batch_index[cells]]
    )
    mean *= np.exp(lfc)
    if model.states is not None and design.state is not None:
        mean *= model.states.expression_factor(design.line_index[cells], design.state[cells])
    theta = model.theta[None, :]
    return rng.poisson(rng.gamma(theta, mean / theta)).astype(np.int32)


def normalise(counts: np.ndarray) -> np.ndarray:
    """log1p(normalize_total(counts, target_sum=1e4)) as float32, like scanpy."""
    totals = counts.sum(axis=1, keepdims=True).astype(np.float64)
    return np.log1p(counts * (TARGET_SUM / np.maximum(totals, 1.0))).astype(np.float32)


# Counts (CSR int32), log1p-normalised values (CSR float32) and the same values dense (float32).
EncodedChunk = tuple[sp.csr_matrix, sp.csr_matrix, np.ndarray]


def encode_chunk(counts: np.ndarray) -> EncodedChunk:
    """Counts as CSR int32, log1p-normalised values as CSR float32 and dense float32.

    Both CSR matrices share one sparsity pattern (log1p(0) = 0), built once.
    """
    nonzero = counts != 0
    row_nnz = nonzero.sum(axis=1)
    indptr = np.concatenate([[0], np.cumsum(row_nnz)]).astype(np.int64)
    indices = np.nonzero(nonzero.reshape(-1))[0] % counts.shape[1]
    values = counts[nonzero]
    totals = counts.sum(axis=1).astype(np.float64)
    scale = np.repeat(TARGET_SUM / np.maximum(totals, 1.0), row_nnz)
    normalised_values = np.log1p(values * scale).astype(np.float32)
    dense = np.zeros(counts.shape, dtype=np.float32)
    dense[nonzero] = normalised_values
    shape = counts.shape
    indices = indices.astype(np.int32)
    counts_csr = sp.csr_matrix((values.astype(np.int32), indices, indptr), shape=shape)
    normalised_csr = sp.csr_matrix((normalised_values, indices.copy(), indptr.copy()), shape=shape)
    return counts_csr, normalised_csr, dense
