"""Per-cell basal state: how it shows in expression and how the response depends on it.

Only presets with :class:`~ptrag.simulation.presets.StateParams` (``replogle-hetero``) use this
module; it draws from its own random stream, so the other presets' output does not change.

For a cell of line c with state s in [0, 1] (Beta(a, a), stored as ``obs["sim_state"]``):

- *visible state*: its expected count of gene g is multiplied by ``exp(S[c, g] (s - 1/2))``, in
  control and perturbed cells alike. ``S`` is non-zero on a few well-expressed genes (the state
  program), shared by all lines.
- *strength*: a responding cell's Gamma strength is multiplied by ``1 + k_s (2s - 1)``.
- *escape*: its escape probability is the condition's times ``1 + k_e (1 - 2s)`` (clipped to [0, 0.95]).
- *gated programs*: a program may respond at high s only (gain 2s) or at low s only (gain 2(1 - s)).
  With ``H`` and ``L`` the parts of the downstream change ``D`` carried by high- and low-gated
  programs, the cell's downstream log fold change is
  ``strength * clip(D + (2s - 1) (H - L), ±max_abs_lfc)``; at the mean state it is ``D``.
- *transfer between lines*: ``twin_lines`` copy the downstream change, strength and gates of their
  source line (full transfer); every other line redraws each program's gate with probability
  ``gate_redraw_prob`` (partial transfer), on top of the line-specific loadings all lines have.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy import special

from ptrag.simulation.model import ScreenModel
from ptrag.simulation.presets import StateParams

__all__ = ["StateModel", "attach_states", "state_nodes"]

UNGATED, HIGH, LOW = 0, 1, 2
MAX_ESCAPE = 0.95


@dataclass(frozen=True)
class StateModel:
    """The state-dependent parameters of one screen."""

    params: StateParams
    state_lfc: np.ndarray  # (n_lines, n_genes): S, log fold change per unit of s
    gates: np.ndarray  # (n_programs, n_lines) int: UNGATED, HIGH or LOW
    gated: np.ndarray  # (n_conditions, n_genes) float32: H - L of each condition
    max_abs_lfc: float  # the response's clip, applied to each cell's downstream change

    def strength_factor(self, s: np.ndarray | float) -> np.ndarray:
        return 1.0 + self.params.strength_slope * (2.0 * np.asarray(s) - 1.0)

    def escape_probability(self, base: np.ndarray | float, s: np.ndarray | float) -> np.ndarray:
        factor = 1.0 + self.params.escape_slope * (1.0 - 2.0 * np.asarray(s))
        return np.clip(np.asarray(base) * factor, 0.0, MAX_ESCAPE)

    def expression_factor(self, line_index: np.ndarray | int, s: np.ndarray | float) -> np.ndarray:
        """exp(S[line] (s - 1/2)): per cell (arrays) or for one line and state (scalars)."""
        s_arr = np.asarray(s, dtype=np.float64)
        return np.exp(self.state_lfc[line_index] * (s_arr[..., None] - 0.5))

    def downstream(self, lfc: np.ndarray, condition: np.ndarray, s: np.ndarray | float) -> np.ndarray:
        """D + (2s − 1)(H − L) of cells of state ``s`` (broadcast), clipped like D to ±max_abs_lfc."""
        limit = self.max_abs_lfc
        return np.clip(lfc + (2.0 * np.asarray(s) - 1.0) * self.gated[condition], -limit, limit)

    def draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        a = self.params.beta_shape
        return rng.beta(a, a, size=n)


def state_nodes(params: StateParams, n_nodes: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Jacobi nodes and weights (summing to 1) for expectations over s ~ Beta(a, a)."""
    a = params.beta_shape
    x, w = special.roots_jacobi(n_nodes, a - 1.0, a - 1.0)
    return (x + 1.0) / 2.0, w / w.sum()


def _gates(
    params: StateParams, n_programs: int, lines: tuple[str, ...], rng: np.random.Generator
) -> np.ndarray:
    def draw(size: int) -> np.ndarray:
        gated = rng.random(size) < params.gated_program_fraction
        return np.where(gated, rng.choice([HIGH, LOW], size=size), UNGATED)

    gates = np.empty((n_programs, len(lines)), dtype=np.int64)
    gates[:, 0] = draw(n_programs)
    for c in range(1, len(lines)):
        redraw = rng.random(n_programs) < params.gate_redraw_prob
        gates[:, c] = np.where(redraw, draw(n_programs), gates[:, 0])
    for twin, source in params.twin_lines:
        if twin in lines and source in lines:
            gates[:, lines.index(twin)] = gates[:, lines.index(source)]
    return gates


def attach_states(model: ScreenModel, rng: np.random.Generator) -> ScreenModel:
    """The model with a :class:`StateModel` and its twin lines' responses copied from their source."""
    params = model.preset.state
    if params is None or model.program_loadings is None:
        raise ValueError("attach_states needs a preset with StateParams and the program loadings.")
    selection, lines = model.selection, model.lines
    n_genes = len(selection.measured)

    # The state program: well-expressed genes (the upper half of baselines), random signs.
    mean_props = model.proportions.mean(axis=(0, 1))
    candidates = np.nonzero(mean_props >= np.median(mean_props))[0]
    k = max(1, round(params.state_gene_fraction * n_genes))
    chosen = rng.choice(candidates, size=min(k, len(candidates)), replace=False)
    loading = np.zeros(n_genes)
    loading[chosen] = (
        rng.choice([-1.0, 1.0], size=len(chosen))
        * params.state_effect
        * np.exp(rng.normal(0.0, 0.25, size=len(chosen)))
    )
    state_lfc = np.tile(loading, (len(lines), 1))

    gates = _gates(params, len(selection.program_names), lines, rng)
    conditions = model.conditions.copy()
    lfc = model.downstream_lfc.copy()
    target_pos = {t: i for i, t in enumerate(selection.targets)}
    line_of = conditions["cell_line"].to_numpy()
    targets = conditions["perturbation"].to_numpy()
    limit = model.preset.response.max_abs_lfc
    gated = np.zeros_like(lfc)
    for row in range(len(conditions)):
        c = lines.index(line_of[row])
        weights = selection.membership[target_pos[targets[row]]]
        sign = np.where(gates[:, c] == HIGH, 1.0, np.where(gates[:, c] == LOW, -1.0, 0.0))
        part = float(conditions.at[row, "strength"]) * ((weights * sign) @ model.program_loadings[:, c, :])
        gated[row] = np.clip(part, -limit, limit)
        target = int(conditions.at[row, "target_measured_index"])
        if target >= 0:
            gated[row, target] = 0.0
    row_of = {(line, t): i for i, (line, t) in enumerate(zip(line_of, targets, strict=True))}
    for twin, source in params.twin_lines:
        for row in np.nonzero(line_of == twin)[0]:
            src = row_of.get((source, targets[row]))
            if src is not None:
                lfc[row], gated[row] = lfc[src], gated[src]
                for column in ("strength", "null_by_design"):
                    conditions.at[row, column] = conditions.at[src, column]
    states = StateModel(params, state_lfc, gates, gated.astype(np.float32), limit)
    return replace(model, conditions=conditions, downstream_lfc=lfc, states=states)
