"""The one prediction core: a run's model for one dataset, and the forward pass every workflow
(held-out groups, in-silico queries, genome-wide screens) goes through."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from ptrag.data.dataset import PerturbationDataset
from ptrag.data.sets import CellSet
from ptrag.errors import DataError, format_list
from ptrag.models import ModelOutput
from ptrag.models.generator import leading_mean
from ptrag.prediction.genes import align_genes
from ptrag.prediction.knockdown import TargetKnockdown, knockdown_prior, set_ordinals
from ptrag.prediction.record import retrieval_rows
from ptrag.prediction.state_gain import StateModulation, response_anchor, state_gains
from ptrag.progress import progress_bar
from ptrag.retrieval import COLLAPSED_SELECTION
from ptrag.run.checkpoint import Checkpoint
from ptrag.run.knockdown import KnockdownPrior
from ptrag.run.spec import ModelSpec
from ptrag.run.state_gains import StateGains
from ptrag.run.tensors import SetTensorizer
from ptrag.run.threads import configure_threads
from ptrag.run.vocabulary import spec_covering

__all__ = [
    "MIN_SETS_PER_BATCH",
    "Predictor",
    "forward_sets",
    "group_control_rows",
    "group_input_means",
    "predictor",
    "run_sets",
]

log = logging.getLogger(__name__)

# Sets per forward pass at prediction (at least this many, or the run's training batch size).
MIN_SETS_PER_BATCH = 64


@dataclass
class Predictor:
    """A checkpoint's model for one dataset: genes aligned, spec covering every query, the
    knockdown prior and state gains its predictions get (None: switched off or none learned).

    The one home of what held-out prediction, queries and screens share: the rule for a
    perturbation without an embedding (:meth:`embedded`), the batch size (:attr:`batch_size`), the
    ``uns["ptrag"]`` metadata (:meth:`metadata`) and the forward pass (:func:`forward_sets`).
    """

    checkpoint: Checkpoint
    dataset: PerturbationDataset
    spec: ModelSpec
    model: torch.nn.Module
    tensorize: SetTensorizer
    knockdown: KnockdownPrior | None = None
    state_gains: StateGains | None = None

    @property
    def batch_size(self) -> int:
        """Sets per forward pass: the run's training batch, at least :data:`MIN_SETS_PER_BATCH`."""
        return max(self.checkpoint.config.train.sets_per_batch, MIN_SETS_PER_BATCH)

    def embedded(self, perturbations: Sequence[str], what: str) -> list[str]:
        """The perturbations the run can embed, in order (duplicates kept).

        Under ``embedding.missing = drop`` a perturbation no gene prior covers has no embedding;
        it is left out, as training left it out, with one warning naming them; none left is an error.
        ``what`` names the items in both messages (e.g. "test group(s)").
        """
        vocabulary = set(self.spec.vocabulary)
        usable = [p for p in perturbations if p in vocabulary]
        skipped = sorted({p for p in perturbations if p not in vocabulary})
        policy = self.checkpoint.config.embedding.missing
        if skipped:
            log.warning(
                "Skipping %d %s whose perturbation has no embedding (embedding.missing = %s): %s",
                len(perturbations) - len(usable),
                what,
                policy,
                format_list(skipped),
            )
        if not usable:
            raise DataError(f"None of the {what} has a perturbation with an embedding: nothing to predict.")
        return usable

    def metadata(self, split: str | None, **entries: object) -> dict[str, object]:
        """``uns["ptrag"]`` of an output: control label, split (omitted when None), arm and
        checkpoint, then ``entries``."""
        config = self.checkpoint.config
        uns: dict[str, object] = {"control_label": self.dataset.control_label}
        if split is not None:
            uns["split"] = split
        uns["arm"] = config.model.arm
        uns["checkpoint"] = str(self.checkpoint.path)
        uns["checkpoint_step"] = self.checkpoint.step
        uns.update(entries)
        return uns


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
        checkpoint,
        dataset,
        spec,
        checkpoint.model(spec),
        SetTensorizer(dataset, spec, checkpoint.config.model.anchor),
        knockdown_prior(checkpoint),
        state_gains(checkpoint),
    )


def group_control_rows(sets: Sequence[CellSet], min_sets: int = 2) -> dict[tuple[str, str], np.ndarray]:
    """(cell type, perturbation) → the input control cells (dataset rows) of all the group's sets
    (each set's ``n_real`` leading cells), for groups predicted by at least ``min_sets`` sets."""
    by_group: dict[tuple[str, str], list[np.ndarray]] = {}
    for s in sets:
        by_group.setdefault((s.cell_type, s.perturbation), []).append(s.control_idx[: s.n_real])
    return {group: np.concatenate(parts) for group, parts in by_group.items() if len(parts) >= min_sets}


def group_input_means(
    group_rows: dict[tuple[str, str], np.ndarray], dataset: PerturbationDataset
) -> dict[tuple[str, str], np.ndarray]:
    """(cell type, perturbation) → mean of the input control cells of all the group's sets, for the
    groups of :func:`group_control_rows`.

    The model re-centres a group on this mean rather than each set on its own: the predicted group
    is one population, and per-set centring would narrow it by sqrt((S-1)/S).
    """
    means: dict[tuple[str, str], np.ndarray] = {}
    # Groups drawn from the same control cells (an in-silico screen's shared draw) share one mean.
    by_cells: dict[bytes, np.ndarray] = {}
    for group, cells in group_rows.items():
        key = cells.tobytes()
        if key not in by_cells:
            values = dataset.expression.rows(cells)
            by_cells[key] = values.mean(axis=0, dtype=np.float64).astype(np.float32)
        means[group] = by_cells[key]
    return means


def forward_sets(
    run: Predictor,
    sets: Sequence[CellSet],
    progress: bool,
    desc: str = "predict",
    seed: int = 0,
) -> Iterator[tuple[int, Sequence[CellSet], ModelOutput]]:
    """``(first set id, sets, output)`` per forward pass of ``run.batch_size`` sets, so callers can
    reduce as they go.

    Every prediction passes through here, so this is where the run's state gains
    (``ptrag.prediction.state_gain``) and then its knockdown prior (``ptrag.prediction.knockdown``;
    draws seeded by ``seed``) are applied to the output.
    """
    model, tensorize = run.model, run.tensorize
    group_rows = group_control_rows(sets)
    group_means = group_input_means(group_rows, tensorize.dataset)
    knockdown = None if run.knockdown is None else TargetKnockdown(run.knockdown, run.spec.genes, seed)
    modulation = None if run.state_gains is None else StateModulation(run.state_gains)
    ordinals = set_ordinals(sets)
    anchors: dict[tuple[str, bytes], np.ndarray] = {}

    def anchor_of(cell_set: CellSet) -> np.ndarray:
        """The anchor of the cells whose mean is removed: the group's, or the set's kept cells'
        (not all of a padded set's cells, as in training); computed once per set of cells (a
        screen's groups share one draw)."""
        key = (cell_set.cell_type, cell_set.perturbation)
        rows = group_rows.get(key, cell_set.control_idx[: cell_set.n_real])
        cached = (cell_set.cell_type, rows.tobytes())
        if cached not in anchors:
            anchors[cached] = tensorize.anchor_means(cell_set.cell_type, rows)
        return anchors[cached]

    with torch.inference_mode():
        sets_per_batch = run.batch_size
        batches = range(0, len(sets), sets_per_batch)
        for start in progress_bar(batches, desc=desc, unit="batch", enabled=progress):
            chunk = sets[start : start + sets_per_batch]
            batch = tensorize(chunk, anchors=[anchor_of(s) for s in chunk])
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
    progress: bool,
    seed: int = 0,
) -> tuple[list[np.ndarray], pd.DataFrame]:
    """Predicted cells of each set (its ``n_real`` rows) and the retrieval record of all sets."""
    predicted: list[np.ndarray] = []
    records: list[pd.DataFrame] = []
    model = run.model
    for start, chunk, output in forward_sets(run, sets, progress, seed=seed):
        values = output.predicted.numpy()
        predicted += [values[i, : s.n_real] for i, s in enumerate(chunk)]
        if output.candidates is not None:
            records.append(retrieval_rows(output, chunk, start, model))
    record = pd.concat(records, ignore_index=True) if records else pd.DataFrame()
    _warn_if_collapsed(record)
    return predicted, record


