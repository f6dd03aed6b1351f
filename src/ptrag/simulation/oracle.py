"""Oracle predictions on a simulated screen: what a model that knew the generative truth would predict.

Every oracle starts, like the ``control`` reference and the models, from n control cells of the cell
type per condition (n = the real cells; the same seeded draws as ``control``, re-centred on the
control pool's mean; :func:`ptrag.evaluation.references.shifted_controls`) and add a true shift:

- ``per_cell``: each control cell gets the true expected response *of its own basal state* s
  (``obs["sim_state"]``): E[perturbed | s] − E[control | s], exact by quadrature
  (:func:`~ptrag.simulation.expectation.conditional_shifts`) on a grid of :data:`N_STATE_GRID`
  states and interpolated linearly in s. Needs a preset with states (``replogle-hetero``).
- ``per_stratum``: each control cell gets the per-cell oracle's shift averaged over the condition's
  cells of its own basal-state stratum (the evaluation's strata, :func:`ptrag.data.strata.fit_strata`
  on the cell type's control cells of ``adata_real``; a cell's stratum read from its control
  expression). It knows each perturbation's state-dependence exactly but reads a cell's state only
  as well as the strata do: what knowing each perturbation's response stratum by stratum is worth.
- ``mean_shift``: every cell gets the condition's true mean shift (``truth.parquet``).

None knows which cells will escape or how strongly each responds, only what is expected given s,
so none reaches the noise floor. The gap between ``mean_shift`` and ``per_cell`` on a metric is the
room a model that reads each cell's state has over the best possible mean shift; ``per_stratum``
shows how much of that room the strata themselves leave open. The output has a prediction's layout (obs
``target_gene``, ``cell_type``, ``batch``, ``control_barcode``; the control cells of ``adata_real``
unchanged), so ``ptrag.evaluation.evaluate`` scores it like any method.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import h5py
import numpy as np
import pandas as pd
from anndata.io import read_elem

from ptrag.errors import DataError
from ptrag.keys import CONTROL_BARCODE_COL, PERT_COL, UNS_KEY
from ptrag.simulation.api import CONDITIONS_FILE, DATA_FILE, TRUTH_FILE, build_screen_model
from ptrag.simulation.cells import CONTROL_LABEL, STATE_COLUMN
from ptrag.simulation.expectation import conditional_shifts
from ptrag.simulation.model import ScreenModel

__all__ = [
    "ORACLE_KINDS",
    "STATE_ORACLE_KINDS",
    "format_oracle_report",
    "load_screen_model",
    "oracle_prediction",
    "oracle_predictions",
    "oracle_report",
]

OracleKind = Literal["per_cell", "per_stratum", "mean_shift"]
ORACLE_KINDS: tuple[str, ...] = ("per_cell", "per_stratum", "mean_shift")
# The oracles that read each cell's basal state (presets with states only).
STATE_ORACLE_KINDS: tuple[str, ...] = ("per_cell", "per_stratum")
N_STATE_GRID = 11
ORACLE_METRICS: tuple[str, ...] = (
    "energy_gene",
    "mmd_gene",
    "w1",
    "pearson_delta",
    "energy_strata",
    "w1_strata",
)


def _simulation_info(sim_dir: Path) -> dict[str, Any]:
    with h5py.File(sim_dir / DATA_FILE, "r") as handle:
        if "uns/ptrag_simulation" not in handle:
            raise DataError(
                f"{sim_dir / DATA_FILE} was not written by ptrag simulate (no uns['ptrag_simulation'])."
            )
        return dict(read_elem(handle["uns/ptrag_simulation"]))


def load_screen_model(sim_dir: str | Path) -> ScreenModel:
    """The generative model of a simulated screen, rebuilt from the preset and seed in its data.h5ad."""
    info = _simulation_info(Path(sim_dir))
    return build_screen_model(str(info["preset"]), int(info["seed"]))


def _states_of(sim_dir: Path, cells: np.ndarray) -> np.ndarray:
    with h5py.File(sim_dir / DATA_FILE, "r") as handle:
        obs = read_elem(handle["obs"])
    if STATE_COLUMN not in obs.columns:
        raise DataError(f"{sim_dir / DATA_FILE} has no obs[{STATE_COLUMN!r}]: its preset has no basal state.")
    states = obs[STATE_COLUMN].astype(np.float64)
    missing = [c for c in cells if c not in states.index]
    if missing:
        raise DataError(
            f"{len(missing)} control cell(s) of adata_real are not cells of {sim_dir}, e.g. {missing[0]!r}."
        )
    return states.loc[cells].to_numpy()


def _per_cell_shifts(
    model: ScreenModel,
    pred: Any,
    states: np.ndarray,
    gene_index: np.ndarray,
    pert_col: str,
    celltype_col: str,
) -> np.ndarray:
    """The shift of every predicted row (zeros for control rows), in adata var order."""
    row_of = {
        (c, p): i
        for i, (c, p) in enumerate(
            zip(model.conditions["cell_line"], model.conditions["perturbation"], strict=True)
        )
    }
    types = pred.obs[celltype_col].astype(str).to_numpy()
    perts = pred.obs[pert_col].astype(str).to_numpy()
    grid = np.linspace(0.0, 1.0, N_STATE_GRID)
    position = np.clip(states * (N_STATE_GRID - 1), 0.0, N_STATE_GRID - 1 - 1e-9)
    low, frac = position.astype(np.int64), position - position.astype(np.int64)
    out = np.zeros(pred.shape, dtype=np.float32)
    batch_weights = np.full(model.preset.n_batches_per_line, 1.0 / model.preset.n_batches_per_line)
    for line in sorted(set(types)):
        wanted = sorted({p for t, p in zip(types, perts, strict=True) if t == line and (line, p) in row_of})
        if not wanted:
            continue
        index = np.array([row_of[(line, p)] for p in wanted])
        shifts = conditional_shifts(model, index, model.lines.index(line), batch_weights, grid)[
            :, :, gene_index
        ]
        for j, perturbation in enumerate(wanted):
            rows = np.nonzero((types == line) & (perts == perturbation))[0]
            lo, f = low[rows], frac[rows, None]
            out[rows] = (1.0 - f) * shifts[lo, j] + f * shifts[np.minimum(lo + 1, N_STATE_GRID - 1), j]
    return out


def _stratum_means(
    shifts: np.ndarray, pred: Any, adata_real: Any, control_label: str, pert_col: str, celltype_col: str
) -> np.ndarray:
    """Each predicted row's shift replaced by the mean over its condition's rows of the same stratum."""
    from ptrag.data.strata import assign_strata, fit_strata

    real_types = adata_real.obs[celltype_col].astype(str).to_numpy()
    real_ctrl = adata_real.obs[pert_col].astype(str).to_numpy() == control_label
    row_of = pd.Series(np.arange(adata_real.n_obs), index=adata_real.obs_names.astype(str))
    barcodes = pred.obs[CONTROL_BARCODE_COL].astype(str).to_numpy()
    types = pred.obs[celltype_col].astype(str).to_numpy()
    perts = pred.obs[pert_col].astype(str).to_numpy()
    out = shifts.copy()
    for line in sorted(set(types)):
        controls = np.asarray(adata_real.X[real_ctrl & (real_types == line)], dtype=np.float64)
        strata = fit_strata(controls)
        for perturbation in sorted(set(perts[(types == line) & (perts != control_label)])):
            rows = np.nonzero((types == line) & (perts == perturbation))[0]
            labels = assign_strata(strata, np.asarray(adata_real.X[row_of[barcodes[rows]].to_numpy()]))
            for stratum in np.unique(labels):
                chosen = rows[labels == stratum]
                out[chosen] = shifts[chosen].mean(axis=0)
    return out


def oracle_prediction(
    sim_dir: str | Path,
    adata_real: Any,
    kind: OracleKind = "per_cell",
    *,
    control_label: str = CONTROL_LABEL,
    pert_col: str = PERT_COL,
    celltype_col: str = "cell_type",
    seed: int = 0,
    model: ScreenModel | None = None,
) -> Any:
    """Oracle predicted cells for every condition of ``adata_real`` (module docstring).

    ``adata_real``: real cells in the evaluation layout, its control cells named as in
    ``sim_dir/data.h5ad`` (as ``ptrag predict`` writes them). ``model``: the screen's generative
    model when already built (:func:`load_screen_model`).
    """
    return oracle_predictions(
        sim_dir,
        adata_real,
        (kind,),
        control_label=control_label,
        pert_col=pert_col,
        celltype_col=celltype_col,
        seed=seed,
        model=model,
    )[kind]


def oracle_predictions(
    sim_dir: str | Path,
    adata_real: Any,
    kinds: Sequence[str] = ORACLE_KINDS,
    *,
    control_label: str = CONTROL_LABEL,
    pert_col: str = PERT_COL,
    celltype_col: str = "cell_type",
    seed: int = 0,
    model: ScreenModel | None = None,
) -> dict[str, Any]:
    """:func:`oracle_prediction` of each of ``kinds``, in that order; the state oracles
    (:data:`STATE_ORACLE_KINDS`) share one computation of the per-cell responses, the costly part."""
    from ptrag.evaluation.control_draws import BuildContext, shifted_controls

    unknown = [kind for kind in kinds if kind not in ORACLE_KINDS]
    if unknown:
        raise ValueError(f"Unknown oracle {unknown[0]!r}; choose one of {', '.join(ORACLE_KINDS)}.")
    sim = Path(sim_dir)
    genes = [str(g) for g in adata_real.var_names]
    context = BuildContext(control_label, pert_col, celltype_col, seed)
    out: dict[str, Any] = {}
    if "mean_shift" in kinds:
        truth = pd.read_parquet(sim / TRUTH_FILE).set_index(["cell_line", "perturbation"])
        missing = [g for g in genes if g not in truth.columns]
        if missing:
            raise DataError(f"Genes of adata_real not in {sim / TRUTH_FILE}: {missing[:5]}.")
        table = truth[genes]
        out["mean_shift"] = shifted_controls(
            adata_real, context, lambda c, p: table.loc[(c, p)].to_numpy(), "oracle_mean_shift"
        )
    state_kinds = [kind for kind in kinds if kind in STATE_ORACLE_KINDS]
    if state_kinds:
        model = model if model is not None else load_screen_model(sim)
        if model.states is None:
            needs = "oracles need" if len(state_kinds) > 1 else "oracle needs"
            raise DataError(
                f"The {' and '.join(state_kinds)} {needs} a preset with a basal state; "
                f"{model.preset.name!r} has none."
            )
        position = {g: i for i, g in enumerate(model.selection.measured)}
        gene_index = np.array([position[g] for g in genes])
        # The seeded draws do not depend on the arm's name: every state oracle starts from them.
        preds = {kind: shifted_controls(adata_real, context, None, f"oracle_{kind}") for kind in state_kinds}
        first = preds[state_kinds[0]]
        states = _states_of(sim, first.obs[CONTROL_BARCODE_COL].astype(str).to_numpy())
        shifts = _per_cell_shifts(model, first, states, gene_index, pert_col, celltype_col)
        for kind, pred in preds.items():
            if kind == "per_stratum":
                pred.X = pred.X + _stratum_means(
                    shifts, pred, adata_real, control_label, pert_col, celltype_col
                )
            else:
                pred.X = pred.X + shifts
            out[kind] = pred
    return {kind: out[kind] for kind in kinds}


def _real_cells(sim_dir: Path, role: str, split_column: str) -> Any:
    """Real cells of the split's ``role`` conditions plus every control of their lines, eval layout."""
    import anndata as ad

    conditions = pd.read_csv(sim_dir / CONDITIONS_FILE)
    chosen = conditions[conditions[split_column] == role]
    with h5py.File(sim_dir / DATA_FILE, "r") as handle:
        obs = read_elem(handle["obs"])
        keys = set(zip(chosen["cell_line"], chosen["perturbation"], strict=True))
        lines = set(chosen["cell_line"])
        pairs = zip(obs["cell_line"].astype(str), obs["gene"].astype(str), strict=True)
        keep = np.array([(c, g) in keys or (g == CONTROL_LABEL and c in lines) for c, g in pairs])
        rows = np.nonzero(keep)[0]
        x = handle["obsm/X_hvg"][:][rows].astype(np.float32)
        genes = read_elem(handle["var"]).index.astype(str)
    real_obs = pd.DataFrame(
        {
            PERT_COL: obs["gene"].astype(str).to_numpy()[rows],
            "cell_type": obs["cell_line"].astype(str).to_numpy()[rows],
            "batch": obs["gem_group"].astype(str).to_numpy()[rows],
        },
        index=obs.index[rows].astype(str),
    )
    real = ad.AnnData(X=x, obs=real_obs, var=pd.DataFrame(index=genes))
    real.uns[UNS_KEY] = {"control_label": CONTROL_LABEL}
    return real


def oracle_report(
    sim_dir: str | Path,
    role: str = "test",
    split_column: str = "split",
    seed: int = 0,
    model: ScreenModel | None = None,
) -> dict[str, Any]:
    """Both oracles and the ``control`` reference scored on the split's ``role`` conditions.

    Scored by ``ptrag.evaluation.evaluate`` (shared PCA on the real cells; no DE, no OT), n-matched.
    Returns per row the mean of :data:`ORACLE_METRICS` over conditions, the gap mean_shift − per_cell
    (positive: the per-cell oracle is better, for lower-is-better metrics) and the share of conditions
    where the per-cell oracle beats the mean-shift oracle.
    """
    from ptrag.evaluation import evaluate, fit_pca_on_real, metric
    from ptrag.evaluation.references import control_reference

    sim = Path(sim_dir)
    real = _real_cells(sim, role, split_column)
    pca = fit_pca_on_real(real, seed=seed)
    model = model if model is not None else load_screen_model(sim)
    oracles = oracle_predictions(sim, real, ("mean_shift", "per_cell", "per_stratum"), seed=seed, model=model)
    preds = {"control": control_reference(real, CONTROL_LABEL, seed=seed)}
    preds |= {f"oracle_{kind}": pred for kind, pred in oracles.items()}
    results = {
        name: evaluate(pred, real, CONTROL_LABEL, pca=pca, include_de=False, include_ot=False, progress=False)
        for name, pred in preds.items()
    }
    rows = {name: {m: float(r.agg.loc["mean", m]) for m in ORACLE_METRICS} for name, r in results.items()}
    cell, mean = results["oracle_per_cell"].results, results["oracle_mean_shift"].results
    wins = {
        m: float((metric(m).better(cell[m].to_numpy(), mean[m].to_numpy()) > 0).mean())
        for m in ORACLE_METRICS
    }
    gap = {m: rows["oracle_mean_shift"][m] - rows["oracle_per_cell"][m] for m in ORACLE_METRICS}
    return {
        "conditions": f"{split_column} = {role}",
        "n_conditions": len(cell),
        "rows": rows,
        "gap_mean_shift_minus_per_cell": gap,
        "per_cell_wins_share": wins,
    }


def format_oracle_report(report: dict[str, Any]) -> str:
    """The oracle rows as plain text."""
    title = f"oracle rows ({report['conditions']}, {report['n_conditions']} conditions)"
    lines = [f"{title:<44}" + "".join(f"{m:>15}" for m in ORACLE_METRICS)]
    for name, row in report["rows"].items():
        lines.append(f"{name:<44}" + "".join(f"{row[m]:>15.4f}" for m in ORACLE_METRICS))
    gap = report["gap_mean_shift_minus_per_cell"]
    lines.append(f"{'gap: mean_shift − per_cell':<44}" + "".join(f"{gap[m]:>15.4f}" for m in ORACLE_METRICS))
    wins = report["per_cell_wins_share"]
    lines.append(
        f"{'share of conditions per_cell is better':<44}"
        + "".join(f"{wins[m]:>15.2f}" for m in ORACLE_METRICS)
    )
    return "\n".join(lines)
