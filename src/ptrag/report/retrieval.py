"""Retrieval at work: how often an arm's selector keeps candidates in training and at prediction.

Inputs per arm are the prediction's retrieval records (``retrieval.csv``: one row per set and
candidate, columns ``set_id``, ``cell_type``, ``perturbation``, ``rank``, ``candidate``, ``cosine``,
``keep_probability``, ``keep_weight``, ``kept``; optionally ``seed`` and any further per-candidate
columns, such as an evidence weight or the evidence's cell count, which are shown as they come) and
the training logs (``metrics.csv`` rows with ``step`` and ``train/selection_rate``; optionally
``seed``). An arm has a selector when either carries its selection.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from ptrag.retrieval import COLLAPSED_SELECTION

__all__ = ["retrieval_section"]

TRAINING_RATE = "train/selection_rate"
SELECTION_COLUMNS = ("keep_weight", "kept")
BASE_COLUMNS = (
    "seed",
    "set_id",
    "cell_type",
    "perturbation",
    "rank",
    "candidate",
    "cosine",
    "keep_probability",
    "keep_weight",
    "kept",
)
MAX_CURVE_POINTS = 200
N_EXAMPLES = 5
SAME_PERTURBATION_SEPARATOR = "@"  # the memory arm names a candidate "PERTURBATION@cell_type"


def _logged(frame: pd.DataFrame | None, column: str) -> bool:
    """Whether ``frame`` has ``column`` with a value (metrics.csv has every column, empty if unused)."""
    return frame is not None and column in frame.columns and bool(frame[column].notna().any())


def has_selector(retrieval: pd.DataFrame | None, training: pd.DataFrame | None) -> bool:
    in_prediction = all(_logged(retrieval, c) for c in SELECTION_COLUMNS)
    return in_prediction or _logged(training, TRAINING_RATE)


def _per_cell_type(retrieval: pd.DataFrame) -> dict[str, dict[str, Any]]:
    # A set is one prediction set: (seed, set_id) when recorded, else one per query perturbation.
    keys = [c for c in ("seed", "set_id") if c in retrieval.columns] or ["perturbation"]
    out: dict[str, dict[str, Any]] = {}
    for cell_type, rows in retrieval.groupby("cell_type", observed=True, sort=True):
        kept = rows["kept"].astype(bool)
        out[str(cell_type)] = {
            "n_sets": int(rows.groupby(keys, observed=True).ngroups),
            "n_candidates": len(rows),
            "selection_rate": float(rows["keep_weight"].mean()),
            "kept_fraction": float(kept.mean()),
            "kept_per_set": float(kept.groupby([rows[k] for k in keys], observed=True).sum().mean()),
        }
    return out


def _same_perturbation(retrieval: pd.DataFrame) -> dict[str, Any] | None:
    """Kept fraction of candidates that are the query perturbation itself (in another cell type)."""
    names = retrieval["candidate"].astype(str)
    if not names.str.contains(SAME_PERTURBATION_SEPARATOR, regex=False).any():
        return None
    same = names.str.split(SAME_PERTURBATION_SEPARATOR, n=1).str[0] == retrieval["perturbation"].astype(str)
    kept = retrieval["kept"].astype(bool)
    return {
        "n_same": int(same.sum()),
        "kept_fraction_same": float(kept[same].mean()) if same.any() else None,
        "n_other": int((~same).sum()),
        "kept_fraction_other": float(kept[~same].mean()) if (~same).any() else None,
    }


def _examples(retrieval: pd.DataFrame, extra: list[str]) -> tuple[list[dict[str, Any]], bool]:
    """A few candidates, one per query first: the kept ones with most weight, else the likeliest."""
    kept = retrieval[retrieval["kept"].astype(bool)]
    pool, any_kept = (kept, True) if len(kept) else (retrieval, False)
    order = ["keep_weight", "cosine"] if any_kept else ["keep_probability", "cosine"]
    order = [c for c in order if c in pool.columns]
    # A query predicted in several sets (or seeds) repeats its candidates: show each pair once.
    ranked = pool.sort_values(order, ascending=False, kind="stable")
    ranked = ranked.drop_duplicates(["cell_type", "perturbation", "candidate"])
    first_per_query = ranked.drop_duplicates(["cell_type", "perturbation"])
    chosen = pd.concat([first_per_query, ranked.drop(first_per_query.index)]).head(N_EXAMPLES)
    columns = [
        c
        for c in ("cell_type", "perturbation", "candidate", "cosine", "keep_probability", "keep_weight")
        if c in chosen.columns
    ]
    records = chosen[[*columns, *extra]].to_dict(orient="records")
    return records, any_kept


def _curves(training: pd.DataFrame) -> dict[str, dict[str, list[float]]]:
    """Per seed, the logged training selection rate over steps (thinned to at most 200 points)."""
    if TRAINING_RATE not in training.columns or "step" not in training.columns:
        return {}
    frame = training.dropna(subset=[TRAINING_RATE])
    seeds = frame["seed"] if "seed" in frame.columns else pd.Series(0, index=frame.index)
    out = {}
    for seed, rows in frame.groupby(seeds, sort=True):
        rows = rows.sort_values("step")
        keep = np.unique(np.linspace(0, len(rows) - 1, min(len(rows), MAX_CURVE_POINTS)).round().astype(int))
        out[f"seed{int(seed)}"] = {
            "step": rows["step"].to_numpy()[keep].astype(int).tolist(),
            "selection_rate": rows[TRAINING_RATE].to_numpy(dtype=np.float64)[keep].tolist(),
        }
    return out


def arm_selection(retrieval: pd.DataFrame | None, training: pd.DataFrame | None) -> dict[str, Any]:
    """The ``retrieval`` entry of one arm in summary.json (see :mod:`ptrag.report.summary`)."""
    entry: dict[str, Any] = {"training": _curves(training) if training is not None else {}}
    finals = [curve["selection_rate"][-1] for curve in entry["training"].values() if curve["selection_rate"]]
    entry["training_final_rate"] = float(np.mean(finals)) if finals else None
    if not all(_logged(retrieval, c) for c in SELECTION_COLUMNS):
        entry.update(prediction={}, selection_rate=None, kept_fraction=None, collapsed=None, examples=[])
        entry.update(examples_kept=False, extra_columns=[], same_perturbation=None)
        return entry
    assert retrieval is not None
    extra = [c for c in retrieval.columns if c not in BASE_COLUMNS and c != "attention"]
    kept_fraction = float(retrieval["kept"].astype(bool).mean())
    examples, examples_kept = _examples(retrieval, extra)
    entry.update(
        prediction=_per_cell_type(retrieval),
        selection_rate=float(retrieval["keep_weight"].mean()),
        kept_fraction=kept_fraction,
        collapsed=kept_fraction < COLLAPSED_SELECTION,
        examples=examples,
        examples_kept=examples_kept,
        extra_columns=extra,
        same_perturbation=_same_perturbation(retrieval),
    )
    return entry


def retrieval_section(
    retrieval: Mapping[str, pd.DataFrame], training: Mapping[str, pd.DataFrame], arms: list[str]
) -> dict[str, dict[str, Any]]:
    """arm → :func:`arm_selection`, for every arm (in ``arms`` order) that has a selector."""
    out = {}
    for arm in arms:
        records, logs = retrieval.get(arm), training.get(arm)
        if has_selector(records, logs):
            out[arm] = arm_selection(records, logs)
    return out
