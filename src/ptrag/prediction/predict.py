"""Predict perturbed cells from a trained run: held-out groups of a split, or in-silico queries."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import anndata as ad
import numpy as np
import pandas as pd
import torch

from ptrag.data.dataset import BATCH, CELL_TYPE, PerturbationDataset
from ptrag.data.sets import CellSet, SetSampler
from ptrag.errors import DataError, PtragError, format_list
from ptrag.models import ModelOutput
from ptrag.models.generator import leading_mean
from ptrag.prediction.genes import align_genes
from ptrag.prediction.knockdown import TargetKnockdown, knockdown_prior, set_ordinals
from ptrag.prediction.record import retrieval_rows
from ptrag.prediction.state_gain import StateModulation, response_anchor, state_gains
from ptrag.progress import progress_bar
from ptrag.retrieval import COLLAPSED_SELECTION
from ptrag.run.checkpoint import Checkpoint
from ptrag.run.groups import embeddable
from ptrag.run.knockdown import KnockdownPrior
from ptrag.run.spec import ModelSpec
from ptrag.run.state_gains import StateGains
from ptrag.run.tensors import SetTensorizer
from ptrag.run.threads import configure_threads
from ptrag.run.vocabulary import spec_covering

log = logging.getLogger(__name__)

# Control cells written beside the predictions, per cell type (cell-eval computes deltas and DE
# against them); capped so that million-cell screens still give files of a sensible size.
MAX_CONTROLS_PER_CELL_TYPE = 5000
# Sets per forward pass at prediction (at least this many, or the run's training batch size).
MIN_SETS_PER_BATCH = 64
# Predicted values (float32) one prediction may hold in memory: beyond this, ask for fewer cells.
MAX_PREDICTED_VALUES = 500_000_000


def check_prediction_size(n_cells: int, n_genes: int, what: str, advice: str) -> None:
    """Refuse, before any work, a prediction whose ``n_cells`` × ``n_genes`` float32 values exceed
    ``MAX_PREDICTED_VALUES`` (2 GB): ``what`` names the request, ``advice`` what to do instead."""
    if n_cells * n_genes > MAX_PREDICTED_VALUES:
        raise DataError(
            f"{what} needs {n_cells * n_genes * 4 / 1e9:.1f} GB of memory for the predicted cells "
            f"({n_cells:,} cells × {n_genes:,} genes as float32; the limit is "
            f"{MAX_PREDICTED_VALUES * 4 / 1e9:.0f} GB): {advice}"
        )


class DirectoryWriter(Protocol):
    """Something that writes its own file into a directory (the reference shifts)."""

    def write_into(self, directory: Path) -> Path: ...


@dataclass
class Prediction:
    """Predicted cells (and, for held-out groups, the real ones) plus the retrieval record.

    Unpacks as ``adata_pred, adata_real = prediction``.
    """

    adata_pred: ad.AnnData
    adata_real: ad.AnnData | None
    retrieval: pd.DataFrame
    # For held-out groups: the simple references' shifts (``ptrag.evaluation.ReferenceShifts``),
    # written beside the cells so that ``ptrag evaluate`` scores them next to the model.
    references: DirectoryWriter | None = None

    def __iter__(self) -> Iterator[ad.AnnData | None]:
        return iter((self.adata_pred, self.adata_real))

    def write(self, out_dir: str | Path, overwrite: bool = False) -> Path:
        """Write adata_pred.h5ad, adata_real.h5ad, retrieval.csv and, for held-out groups,
        references.npz; ``out_dir`` is replaced atomically."""
        from ptrag.prediction.write import write_prediction

        return write_prediction(self, out_dir, overwrite=overwrite)


@dataclass
class Predictor:
    """A checkpoint's model for one dataset: genes aligned, spec covering every query, and the
    knockdown prior its predictions get (None: ``prediction.target_knockdown = "off"`` or none learned)."""

    dataset: PerturbationDataset
    spec: ModelSpec
    model: torch.nn.Module
    tensorize: SetTensorizer
    knockdown: KnockdownPrior | None = None
    state_gains: StateGains | None = None


def predictor(
    checkpoint: Checkpoint,
    dataset: PerturbationDataset,
    perturbations: Sequence[str],
    cell_types: Sequence[str],
) -> Predictor:
    configure_threads(checkpoint.config.train.num_threads)
    dataset = align_genes(dataset, checkpoint.spec.genes)
    spec = spec_covering(checkpoint.spec, checkpoint.config, perturbations, cell_types)
    return Predictor(
        dataset,
        spec,
        checkpoint.model(spec),
        SetTensorizer(dataset, spec),
        knockdown_prior(checkpoint),
        state_gains(checkpoint),
    )


def group_input_means(
    sets: Sequence[CellSet], dataset: PerturbationDataset
) -> dict[tuple[str, str], np.ndarray]:
    """(cell type, perturbation) → mean of the input control cells of all the group's sets (each
    set's ``n_real`` leading cells), for groups predicted by more than one set.

    The model re-centres a group on this mean rather than each set on its own: the predicted group
    is one population, and per-set centring would narrow it by sqrt((S-1)/S).
    """
    by_group: dict[tuple[str, str], list[np.ndarray]] = {}
    for s in sets:
        by_group.setdefault((s.cell_type, s.perturbation), []).append(s.control_idx[: s.n_real])
    means: dict[tuple[str, str], np.ndarray] = {}
    # Groups drawn from the same control cells (an in-silico screen's shared draw) share one mean.
    by_cells: dict[bytes, np.ndarray] = {}
    for group, parts in by_group.items():
        if len(parts) > 1:
            cells = np.concatenate(parts)
            key = cells.tobytes()
            if key not in by_cells:
                values = dataset.expression.rows(cells)
                by_cells[key] = values.mean(axis=0, dtype=np.float64).astype(np.float32)
            means[group] = by_cells[key]
    return means


def forward_sets(
    run: Predictor,
    sets: Sequence[CellSet],
    sets_per_batch: int,
    progress: bool,
    desc: str = "predict",
    seed: int = 0,
) -> Iterator[tuple[int, Sequence[CellSet], ModelOutput]]:
    """``(first set id, sets, output)`` per forward pass, so callers can reduce as they go.

    Every prediction passes through here, so this is where the run's state gains
    (``ptrag.prediction.state_gain``) and then its knockdown prior (``ptrag.prediction.knockdown``;
    draws seeded by ``seed``) are applied to the output.
    """
    model, tensorize = run.model, run.tensorize
    group_means = group_input_means(sets, tensorize.dataset)
    knockdown = None if run.knockdown is None else TargetKnockdown(run.knockdown, run.spec.genes, seed)
    modulation = None if run.state_gains is None else StateModulation(run.state_gains)
    ordinals = set_ordinals(sets)
    with torch.inference_mode():
        batches = range(0, len(sets), sets_per_batch)
        for start in progress_bar(batches, desc=desc, unit="batch", enabled=progress):
            chunk = sets[start : start + sets_per_batch]
            batch = tensorize(chunk)
            # Only each set's first n_real cells are kept: the anchor is their mean, or the group's.
            anchor_cells = torch.tensor([s.n_real for s in chunk])
            batch["anchor_cells"] = anchor_cells
            if group_means:
                own = leading_mean(batch["control"], anchor_cells)[:, 0]
                batch["input_mean"] = torch.stack(
                    [
                        torch.from_numpy(group_means[key]) if key in group_means else own[i]
                        for i, key in enumerate((s.cell_type, s.perturbation) for s in chunk)
                    ]
                )
            output = model.on_batch(batch)
            if modulation is not None:
                anchor = response_anchor(batch, model.generator)
                modulation.apply(chunk, batch["control"], output.predicted, anchor)
            if knockdown is not None:
                chunk_ordinals = ordinals[start : start + len(chunk)]
                knockdown.apply(chunk, chunk_ordinals, batch["control"], output.predicted)
            yield start, chunk, output


def _warn_if_collapsed(record: pd.DataFrame) -> None:
    if "keep_weight" in record and float(record["keep_weight"].mean()) < COLLAPSED_SELECTION:
        log.warning(
            "Selection has collapsed: %.2g%% of retrieved candidates kept across these predictions "
            "(under %.0f%%), so retrieval adds next to nothing to them (retrieval.csv has the detail).",
            100 * float(record["keep_weight"].mean()),
            100 * COLLAPSED_SELECTION,
        )


def run_sets(
    run: Predictor,
    sets: Sequence[CellSet],
    sets_per_batch: int,
    progress: bool,
    seed: int = 0,
) -> tuple[list[np.ndarray], pd.DataFrame]:
    """Predicted cells of each set (its ``n_real`` rows) and the retrieval record of all sets."""
    predicted: list[np.ndarray] = []
    records: list[pd.DataFrame] = []
    model = run.model
    for start, chunk, output in forward_sets(run, sets, sets_per_batch, progress, seed=seed):
        values = output.predicted.numpy()
        predicted += [values[i, : s.n_real] for i, s in enumerate(chunk)]
        if output.candidates is not None:
            records.append(retrieval_rows(output, chunk, start, model))
    record = pd.concat(records, ignore_index=True) if records else pd.DataFrame()
    _warn_if_collapsed(record)
    return predicted, record


def _control_cells(dataset: PerturbationDataset, cell_types: Sequence[str], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    chosen = []
    for cell_type in sorted(set(cell_types)):
        cells = dataset.conditions.controls(cell_type)
        if len(cells) > MAX_CONTROLS_PER_CELL_TYPE:
            cells = np.sort(rng.choice(cells, MAX_CONTROLS_PER_CELL_TYPE, replace=False))
        chosen.append(cells)
    return np.concatenate(chosen) if chosen else np.zeros(0, dtype=np.int64)


def predicted_obs(dataset: PerturbationDataset, sets: Sequence[CellSet]) -> pd.DataFrame:
    """obs of the predicted cells: one row per real cell of each set, with the control it started from."""
    names = dataset.obs.index.to_numpy()
    batches = dataset.obs[BATCH].astype(str).to_numpy()
    return pd.DataFrame(
        {
            "target_gene": np.concatenate([[s.perturbation] * s.n_real for s in sets]),
            "cell_type": np.concatenate([[s.cell_type] * s.n_real for s in sets]),
            "batch": np.concatenate([batches[s.control_idx[: s.n_real]] for s in sets]),
            "control_barcode": np.concatenate([names[s.control_idx[: s.n_real]] for s in sets]),
        }
    )


def to_anndata(
    values: np.ndarray, obs: pd.DataFrame, genes: Sequence[str], uns: dict[str, object]
) -> ad.AnnData:
    obs = obs.astype({c: "category" for c in obs.columns})
    adata = ad.AnnData(X=values.astype(np.float32, copy=False), obs=obs)
    adata.var_names = pd.Index(list(genes))
    adata.uns["ptrag"] = uns
    return adata


def predict_sets(
    checkpoint: Checkpoint,
    dataset: PerturbationDataset,
    groups: Sequence[tuple[str, str]],
    *,
    seed: int = 0,
    role: str = "test",
    progress: bool = True,
    with_real: bool = True,
) -> Prediction:
    """Predict every cell of each (cell type, perturbation) group, n-matched to the real cells.

    Groups whose perturbation the run cannot embed (``embedding.missing = drop``) are left out, as
    training left them out, with one warning line.
    """
    run = predictor(checkpoint, dataset, [p for _, p in groups], [c for c, _ in groups])
    dataset = run.dataset
    usable = embeddable(groups, run.spec.vocabulary)
    skipped = [f"{c}/{p}" for c, p in groups if (c, p) not in set(usable)]
    if skipped:
        log.warning(
            "Skipping %d %s group(s) whose perturbation has no embedding (embedding.missing = %s): %s",
            len(skipped),
            role,
            checkpoint.config.embedding.missing,
            format_list(skipped),
        )
    if not usable:
        raise PtragError(f"No {role} perturbations to predict.")
    sampler = SetSampler(dataset, usable, checkpoint.config.train.cell_set_len, seed)
    sets = sampler.fixed_sets()
    batch_size = max(checkpoint.config.train.sets_per_batch, MIN_SETS_PER_BATCH)
    predicted, record = run_sets(run, sets, batch_size, progress, seed=seed)

    control_cells = _control_cells(dataset, [c for c, _ in usable], seed)
    label = dataset.control_label
    obs_cells = dataset.obs.index.to_numpy()
    batches = dataset.obs[BATCH].astype(str).to_numpy()
    cell_types = dataset.obs[CELL_TYPE].astype(str).to_numpy()
    pert_rows = predicted_obs(dataset, sets)
    control_rows = pd.DataFrame(
        {
            "target_gene": label,
            "cell_type": cell_types[control_cells],
            "batch": batches[control_cells],
            "control_barcode": obs_cells[control_cells],
        }
    )
    control_values = dataset.expression.rows(control_cells)
    uns = {
        "control_label": label,
        "split": role,
        "arm": checkpoint.config.model.arm,
        "checkpoint": str(checkpoint.path),
        "checkpoint_step": checkpoint.step,
    }
    pred_obs = pd.concat([pert_rows, control_rows], ignore_index=True)
    pred_obs.index = [f"pred_{i}" for i in range(len(pred_obs))]
    adata_pred = to_anndata(np.vstack([*predicted, control_values]), pred_obs, run.spec.genes, uns)
    adata_real = None
    if with_real:
        real_idx = np.concatenate([s.target_idx[: s.n_real] for s in sets])
        real_obs = pert_rows.drop(columns="control_barcode").copy()
        real_obs["batch"] = batches[real_idx]
        real_obs = pd.concat([real_obs, control_rows.drop(columns="control_barcode")], ignore_index=True)
        real_obs.index = np.concatenate([obs_cells[real_idx], obs_cells[control_cells]]).astype(str)
        real_values = np.vstack([dataset.expression.rows(real_idx), control_values])
        adata_real = to_anndata(real_values, real_obs, run.spec.genes, {**uns, "arm": "real"})
    return Prediction(adata_pred, adata_real, record)
