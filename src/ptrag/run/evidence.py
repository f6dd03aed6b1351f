"""Memory updates without retraining: new measurements become evidence rows of a trained run.

``ptrag memory add RUN_DIR --data NEW.h5ad --out NEW_RUN_DIR`` measures every (perturbation, cell
type) of NEW.h5ad against that file's own control cells — the evidence a trained memory arm retrieves
— and writes a copy of the run whose memory holds them too. The weights are untouched: the model
learned how to use evidence, so more evidence (a perturbation now measured in another cell line,
related perturbations measured in the query's line) changes its predictions at once.

What an added measurement of (p, c) does not change: the prediction of (p, c) itself. A query never
retrieves its own (perturbation, cell type) row — held-out evaluation must never see the measurement
it is scored against — so for a pair that has been measured, the measurement is the answer.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ptrag.config import get_arm
from ptrag.data.dataset import PerturbationDataset
from ptrag.errors import CheckpointError, DataError, format_list
from ptrag.retrieval import ResponseMemory
from ptrag.run.checkpoint import Checkpoint, copy_run
from ptrag.run.spec import ModelSpec
from ptrag.run.vocabulary import resolve_vocabulary

__all__ = ["EvidenceUpdate", "add_evidence"]

log = logging.getLogger(__name__)


# What the grown run does with the added rows, printed by `ptrag memory add` (docs/retrieval.md).
USE_OF_ADDED_ROWS = (
    "The grown run retrieves an added (perturbation, cell type) measurement when it predicts that "
    "perturbation in other cell types, and neighbouring perturbations in that cell type. It never "
    "uses it for that pair's own prediction (a query never retrieves its own measurement, so that "
    "held-out evaluation cannot see it): for a pair you measured, use the measurement itself."
)


def new_cell_type_note(new: tuple[str, ...], trained: tuple[str, ...]) -> str:
    """What the run can and cannot do with cell types it was never trained on."""
    names = format_list(new)
    return (
        f"Cell type(s) {names} are new to the run: its weights were never trained on them (trained "
        f"on {format_list(trained)}). Their rows are evidence for predicting the same perturbations "
        f"in the other cell types, and for predictions in {names} of neighbouring perturbations. A "
        f"prediction in {names} starts from the {names} control cells given to `ptrag predict "
        "--data` (the run stores no cells of any type), with those rows as its evidence."
    )


@dataclass(frozen=True)
class EvidenceUpdate:
    out: Path
    added: int  # rows added (new (perturbation, cell type) pairs)
    replaced: int  # rows whose earlier measurement was replaced
    new_perturbations: tuple[str, ...]  # not in the run's vocabulary before
    rows: int  # memory rows after the update
    new_cell_types: tuple[str, ...] = ()  # cell types the run was never trained on
    notes: tuple[str, ...] = ()  # what the grown run does (and does not do) with the added rows

    @property
    def message(self) -> str:
        summary = (
            f"added {self.added} measured (perturbation, cell type) rows"
            + (f", replaced {self.replaced}" if self.replaced else "")
            + f" ({len(self.new_perturbations)} perturbation(s) new to the run); "
            f"the memory now holds {self.rows} rows → {self.out}"
        )
        return "\n".join([summary, *self.notes])


def measured_evidence(dataset: PerturbationDataset) -> ResponseMemory:
    """Every perturbed (perturbation, cell type) of ``dataset``, measured against its own controls."""
    lacking = sorted({c for c, _ in dataset.conditions.groups if dataset.conditions.controls(c).size == 0})
    if lacking:
        raise DataError(
            f"Cell type(s) {format_list(lacking)} of {dataset.source or 'the data'} have no "
            f"{dataset.control_label!r} control cells: a measured shift needs that file's own controls."
        )
    evidence = ResponseMemory.from_training_cells(dataset, ~dataset.is_control)
    if not len(evidence):
        raise DataError(f"{dataset.source or 'The data'} has no perturbed cells: nothing to add.")
    return evidence


def spec_with_evidence(
    checkpoint: Checkpoint, evidence: ResponseMemory, replace_rows: bool
) -> tuple[ModelSpec, tuple[str, ...], int]:
    """The run's spec with ``evidence`` in its memory (and its perturbations in the vocabulary and
    the retrieval database); also the perturbations new to the vocabulary and the rows replaced."""
    spec = checkpoint.spec
    assert spec.memory is not None
    new = [p for p in dict.fromkeys(evidence.perturbations) if p not in spec.vocabulary]
    if new:
        resolved = resolve_vocabulary(new, checkpoint.config, spec.prior_tables)
        unembedded = sorted(set(new) - set(resolved.genes))
        if unembedded:
            log.warning("Leaving out %d perturbation(s) without a gene embedding: %s",
                        len(unembedded), format_list(unembedded))  # fmt: skip
            keep = np.flatnonzero(~np.isin(np.array(evidence.perturbations), unembedded))
            evidence = evidence.subset(keep)
        spec = spec.extended(resolved.genes, resolved.matrix)
    known = set(zip(spec.memory.perturbations, spec.memory.cell_types, strict=True))
    replaced = sum(key in known for key in zip(evidence.perturbations, evidence.cell_types, strict=True))
    try:
        memory = spec.memory.merged(evidence, replace=replace_rows)
    except ValueError as exc:
        raise DataError(
            f"The new data measures (perturbation, cell type) pairs the run's memory already holds "
            f"({exc}). Pass --replace to use the new measurements instead."
        ) from None
    database = list(spec.database.perturbations)
    database += [p for p in dict.fromkeys(evidence.perturbations) if p not in set(database)]
    extended = ModelSpec.build(
        spec.genes,
        spec.vocabulary,
        spec.vocabulary_embeddings,
        spec.cell_types,
        spec.batches,
        database,
        memory,
        spec.embedding_source,
        spec.normalisation,
        # The knockdown prior and state gains stay the training data's: added rows are evidence
        # for other predictions, not a re-estimate of how knockdowns act.
        spec.knockdown,
        spec.prior_tables,
        spec.state_gains,
    )
    return extended.with_cell_types(evidence.cell_types), tuple(new), replaced


def add_evidence(
    run_dir: str | Path,
    dataset: PerturbationDataset,
    out: str | Path,
    *,
    replace_rows: bool = False,
    overwrite: bool = False,
) -> EvidenceUpdate:
    """Write ``out``: a copy of ``run_dir`` whose memory also holds ``dataset``'s measurements.

    ``dataset`` must already be read with the run's genes and normalisation
    (``ptrag.Model.load_data``). The old run is never modified.
    """
    run_dir = Path(run_dir)
    checkpoint = Checkpoint.load(run_dir)
    arm = get_arm(checkpoint.config.model.arm)
    if not arm.kind.memory:
        raise CheckpointError(
            f"{run_dir} is a {arm.name!r} run, which has no evidence memory; memory add needs a run "
            "of an arm of the memory kind (e.g. --arm memory)."
        )
    if Path(out).resolve() == run_dir.resolve():
        raise CheckpointError("--out must differ from RUN_DIR: the trained run is never modified.")
    evidence = measured_evidence(dataset)
    trained = checkpoint.spec.cell_types
    new_types = tuple(c for c in dict.fromkeys(evidence.cell_types) if c not in trained)
    spec, new, replaced = spec_with_evidence(checkpoint, evidence, replace_rows)
    copy_run(run_dir, out, spec=spec, overwrite=overwrite)
    assert spec.memory is not None
    notes = (USE_OF_ADDED_ROWS, *([new_cell_type_note(new_types, trained)] if new_types else []))
    return EvidenceUpdate(
        Path(out), len(evidence) - replaced, replaced, new, len(spec.memory), new_types, notes
    )
