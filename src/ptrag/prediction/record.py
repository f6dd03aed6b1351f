"""The retrieval record: per set, the query, its K candidates and what the model did with them."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from ptrag.data.sets import CellSet
from ptrag.models import ModelOutput

__all__ = ["retrieval_rows"]


def retrieval_rows(
    output: ModelOutput, sets: Sequence[CellSet], first_set_id: int, model: torch.nn.Module
) -> pd.DataFrame:
    """One row per (set, candidate rank).

    ``keep_weight`` is the fraction of the set's real cells that kept the candidate (PT-RAG, memory),
    ``keep_probability`` the mean softmax probability of "keep", and ``kept`` whether any cell kept
    it. For vanilla RAG ``attention`` holds the mean attention weight instead. The memory arm adds
    what each candidate is: ``same_perturbation`` (the query measured in another cell type),
    ``n_cells`` behind its evidence, and ``evidence_weight``, the mean weight of its shift in the
    predicted cells (a_ik, see ptrag.models.evidence).
    """
    candidates = output.candidates
    assert candidates is not None
    b, k = candidates.index.shape
    names = model.retriever.candidate_names(candidates.index.numpy())  # type: ignore[union-attr]
    valid = candidates.valid.numpy()
    real = np.zeros((b, output.predicted.shape[1]), dtype=bool)
    for i, s in enumerate(sets):
        real[i, : s.n_real] = True
    frame: dict[str, object] = {
        "set_id": np.repeat(np.arange(first_set_id, first_set_id + b), k),
        "cell_type": np.repeat([s.cell_type for s in sets], k),
        "perturbation": np.repeat([s.perturbation for s in sets], k),
        "rank": np.tile(np.arange(k), b),
        "candidate": [n for row in names for n in row],
        "cosine": candidates.cosine.numpy().ravel(),
        "valid": valid.ravel(),
    }

    def per_cell_mean(values: np.ndarray) -> np.ndarray:  # (B, S, K) → (B, K) over real cells
        weights = real[:, :, None]
        return (values * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1)

    if output.selection is not None:
        weight = per_cell_mean(output.selection.weights.numpy())
        frame["keep_probability"] = per_cell_mean(output.selection.keep_probability.numpy()).ravel()
        frame["keep_weight"] = weight.ravel()
        frame["kept"] = (weight > 0).ravel() & valid.ravel()
    if output.attention is not None:
        frame["attention"] = per_cell_mean(output.attention.numpy()).ravel()
    if output.evidence_weights is not None and candidates.same_perturbation is not None:
        counts = model.retriever.memory.counts  # type: ignore[union-attr]
        frame["same_perturbation"] = candidates.same_perturbation.numpy().ravel()
        frame["n_cells"] = counts[candidates.index.numpy()].ravel()
        frame["evidence_weight"] = per_cell_mean(output.evidence_weights.numpy()).ravel()
    table = pd.DataFrame(frame)
    return table[table["valid"]].drop(columns="valid").reset_index(drop=True)
