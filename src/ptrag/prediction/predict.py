"""Predict perturbed cells from a trained run: held-out groups of a split, or in-silico queries."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from ptrag.config import Config
from ptrag.data.dataset import BATCH, CELL_TYPE, PerturbationDataset
from ptrag.data.sets import CellSet, SetSampler
from ptrag.errors import DataError, PtragError, format_list
from ptrag.models import ModelOutput
from ptrag.models.build import ModelSpec, build_model, load_weights
from ptrag.prediction.genes import align_genes
from ptrag.prediction.record import retrieval_rows
from ptrag.training.batches import SetTensorizer
from ptrag.training.checkpoints import read_checkpoint
from ptrag.training.module import CHECKPOINT_KEY
from ptrag.training.run import LAST_CHECKPOINT
from ptrag.training.threads import configure_threads

log = logging.getLogger(__name__)

# Control cells written beside the predictions, per cell type (cell-eval computes deltas and DE
# against them); capped so that million-cell screens still give files of a sensible size.
MAX_CONTROLS_PER_CELL_TYPE = 5000


@dataclass
class TrainedModel:
    config: Config
    spec: ModelSpec
    state_dict: dict[str, torch.Tensor]
    source: str

    @classmethod
    def load(cls, run_dir: str | Path) -> TrainedModel:
        from ptrag.config import config_from_dict

        path = Path(run_dir)
        checkpoint = path / LAST_CHECKPOINT if path.is_dir() else path
        payload = read_checkpoint(checkpoint)
        info = payload[CHECKPOINT_KEY]
        state = {
            k.removeprefix("model."): v for k, v in payload["state_dict"].items() if k.startswith("model.")
        }
        return cls(
            config_from_dict(info["config"]), ModelSpec.from_state(info["spec"]), state, str(checkpoint)
        )

    def model_for(self, spec: ModelSpec) -> torch.nn.Module:
        model = build_model(self.config, spec)
        load_weights(model, self.state_dict)
        return model.eval()


@dataclass
class Prediction:
    adata_pred: ad.AnnData
    adata_real: ad.AnnData | None
    retrieval: pd.DataFrame


def spec_covering(trained: TrainedModel, names: Sequence[str]) -> ModelSpec:
    """The trained spec, extended with embeddings for perturbations it has never seen."""
    unknown = sorted(set(names) - set(trained.spec.vocabulary))
    if not unknown:
        return trained.spec
    from ptrag.training.prepare import resolve_vocabulary

    resolved, matrix, _ = resolve_vocabulary(unknown, trained.config)
    dropped = sorted(set(unknown) - set(resolved))
    if dropped:
        raise DataError(
            f"No gene embedding for the perturbations {format_list(dropped)}; cannot predict them."
        )
    return trained.spec.extended(resolved, matrix)


def run_sets(
    model: torch.nn.Module,
    sets: Sequence[CellSet],
    tensorize: SetTensorizer,
    sets_per_batch: int,
    progress: bool,
) -> tuple[list[np.ndarray], pd.DataFrame]:
    """Predicted cells of each set (its ``n_real`` rows) and the retrieval record of all sets."""
    predicted: list[np.ndarray] = []
    records: list[pd.DataFrame] = []
    chunks = [sets[i : i + sets_per_batch] for i in range(0, len(sets), sets_per_batch)]
    with torch.inference_mode():
        for start, chunk in zip(
            range(0, len(sets), sets_per_batch),
            tqdm(chunks, desc="predict", disable=not progress),
            strict=True,
        ):
            batch = tensorize(chunk)
            output: ModelOutput = model(
                batch["control"], batch["pert_index"], batch["cell_type_index"], batch["batch_codes"]
            )
            values = output.predicted.numpy()
            predicted += [values[i, : s.n_real] for i, s in enumerate(chunk)]
            if output.candidates is not None:
                records.append(retrieval_rows(output, chunk, start, model))
    record = pd.concat(records, ignore_index=True) if records else pd.DataFrame()
    return predicted, record


def _control_cells(dataset: PerturbationDataset, cell_types: Sequence[str], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    obs_type = dataset.obs[CELL_TYPE].astype(str).to_numpy()
    chosen = []
    for cell_type in sorted(set(cell_types)):
        cells = np.flatnonzero(dataset.is_control & (obs_type == cell_type))
        if len(cells) > MAX_CONTROLS_PER_CELL_TYPE:
            cells = np.sort(rng.choice(cells, MAX_CONTROLS_PER_CELL_TYPE, replace=False))
        chosen.append(cells)
    return np.concatenate(chosen) if chosen else np.zeros(0, dtype=np.int64)


def to_anndata(
    values: np.ndarray, obs: pd.DataFrame, genes: Sequence[str], uns: dict[str, object]
) -> ad.AnnData:
    obs = obs.astype({c: "category" for c in obs.columns})
    adata = ad.AnnData(X=values.astype(np.float32, copy=False), obs=obs)
    adata.var_names = pd.Index(list(genes))
    adata.uns["ptrag"] = uns
    return adata


def predict_sets(
    trained: TrainedModel,
    dataset: PerturbationDataset,
    groups: Sequence[tuple[str, str]],
    *,
    seed: int = 0,
    role: str = "test",
    progress: bool = True,
    with_real: bool = True,
) -> Prediction:
    """Predict every cell of each (cell type, perturbation) group, n-matched to the real cells."""
    configure_threads(trained.config.train.num_threads)
    if not groups:
        raise PtragError(f"No {role} perturbations to predict.")
    dataset = align_genes(dataset, trained.spec.genes)
    spec = spec_covering(trained, [p for _, p in groups])
    model = trained.model_for(spec)
    tensorize = SetTensorizer(dataset, spec)
    sampler = SetSampler(dataset, groups, trained.config.train.cell_set_len, seed)
    sets = sampler.fixed_sets()
    batch_size = max(trained.config.train.sets_per_batch, 64)
    predicted, record = run_sets(model, sets, tensorize, batch_size, progress)

    control_cells = _control_cells(dataset, [c for c, _ in groups], seed)
    label = dataset.control_label
    obs_cells = dataset.obs.index.to_numpy()
    batches = dataset.obs[BATCH].astype(str).to_numpy()
    cell_types = dataset.obs[CELL_TYPE].astype(str).to_numpy()
    pert_rows = pd.DataFrame(
        {
            "target_gene": np.concatenate([[s.perturbation] * s.n_real for s in sets]),
            "cell_type": np.concatenate([[s.cell_type] * s.n_real for s in sets]),
            "batch": np.concatenate([batches[s.control_idx[: s.n_real]] for s in sets]),
            "control_barcode": np.concatenate([obs_cells[s.control_idx[: s.n_real]] for s in sets]),
        }
    )
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
        "arm": trained.config.model.arm,
        "checkpoint": trained.source,
    }
    pred_obs = pd.concat([pert_rows, control_rows], ignore_index=True)
    pred_obs.index = [f"pred_{i}" for i in range(len(pred_obs))]
    adata_pred = to_anndata(np.vstack([*predicted, control_values]), pred_obs, spec.genes, uns)
    adata_real = None
    if with_real:
        real_idx = np.concatenate([s.target_idx[: s.n_real] for s in sets])
        real_obs = pert_rows.drop(columns="control_barcode").copy()
        real_obs["batch"] = batches[real_idx]
        real_obs = pd.concat([real_obs, control_rows.drop(columns="control_barcode")], ignore_index=True)
        real_obs.index = np.concatenate([obs_cells[real_idx], obs_cells[control_cells]]).astype(str)
        real_values = np.vstack([dataset.expression.rows(real_idx), control_values])
        adata_real = to_anndata(real_values, real_obs, spec.genes, {**uns, "arm": "real"})
    return Prediction(adata_pred, adata_real, record)
