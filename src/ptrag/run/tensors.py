"""Cell sets as the tensors a PerturbationModel takes, through a spec's index maps."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ptrag.config.schema import AnchorMode
from ptrag.data.dataset import PerturbationDataset
from ptrag.data.sets import CellSet, collate
from ptrag.run.spec import ModelSpec

__all__ = ["SetTensorizer"]


class SetTensorizer:
    """Turn cell sets into model inputs; every perturbation and cell type must be in the spec.

    Prediction extends the spec with unseen perturbations and cell types first
    (``ptrag.run.vocabulary.spec_covering``), so nothing is ever mapped to another entry's row.
    Batches unseen in training map to the generator's reserved zero row.
    """

    def __init__(
        self,
        dataset: PerturbationDataset,
        spec: ModelSpec,
        anchor: AnchorMode,
        strata: np.ndarray | None = None,
    ) -> None:
        self.dataset = dataset
        self.anchor = anchor
        # Per cell of the dataset, its basal-state stratum (ptrag.data.strata.cell_strata), for the
        # stratified loss; None leaves the strata out of the batches.
        self.strata = strata
        self.vocabulary = {name: i for i, name in enumerate(spec.vocabulary)}
        self.cell_types = {name: i for i, name in enumerate(spec.cell_types)}
        spec_batches = {name: i for i, name in enumerate(spec.batches)}
        categories = [str(b) for b in dataset.obs["batch"].cat.categories]
        self.batch_map = np.array(
            [spec_batches.get(b, len(spec.batches)) for b in categories], dtype=np.int64
        )
        # The anchor of every set: its cell type's control-pool mean in THIS dataset (at prediction,
        # the controls given with the query), computed once; under "batch_pool", the mean over the
        # set's control cells of their own batch's control mean (anchor_means).
        self.control_means = dataset.control_means
        # float64 once here, not per set: anchor_means runs for every set of every training step.
        self._batch_means = (
            {c: table.astype(np.float64) for c, table in dataset.batch_control_means.items()}
            if anchor == "batch_pool"
            else None
        )

    def anchor_means(self, cell_type: str, control_rows: np.ndarray) -> np.ndarray:
        """(n_genes,) float32: what a set of these control cells (dataset rows) is re-centred on.

        ``control_pool``: the cell type's pool mean. ``batch_pool``: the mean of each cell's own
        batch's control mean, so a group drawn from batches 1 and 2 keeps their offset from the pool
        (the real cells of the group carry it too).
        """
        if self._batch_means is None:
            return self.control_means[cell_type]
        table = self._batch_means[cell_type]
        counts = np.bincount(self.dataset.batch_codes[control_rows], minlength=table.shape[0])
        return (counts @ table / max(len(control_rows), 1)).astype(np.float32)

    @staticmethod
    def _index(lookup: dict[str, int], names: Sequence[str], what: str) -> torch.Tensor:
        missing = sorted(set(names) - set(lookup))
        if missing:
            raise ValueError(f"{what} {missing} are not in the model spec; extend the spec first")
        return torch.tensor([lookup[name] for name in names], dtype=torch.long)

    def __call__(
        self, sets: Sequence[CellSet], anchors: Sequence[np.ndarray] | None = None
    ) -> dict[str, torch.Tensor]:
        """The batch of ``sets``. ``anchors``: each set's ``control_mean`` when the caller has it
        already (prediction anchors a group of sets on all of its cells); else :meth:`anchor_means`
        of each set's control cells."""
        arrays = collate(list(sets), self.dataset)
        if anchors is None:
            anchors = [self.anchor_means(s.cell_type, s.control_idx) for s in sets]
        batch = {
            "control": torch.from_numpy(arrays["control"]),
            "target": torch.from_numpy(arrays["target"]),
            "batch_codes": torch.from_numpy(self.batch_map[arrays["batch_codes"]]),
            "pert_index": self._index(self.vocabulary, arrays["perturbation"], "perturbations"),
            "cell_type_index": self._index(self.cell_types, arrays["cell_type"], "cell types"),
            "control_mean": torch.from_numpy(np.stack(anchors)),
        }
        if self.strata is not None:
            for key, name in (("control_stratum", "control_idx"), ("target_stratum", "target_idx")):
                rows = np.stack([getattr(s, name) for s in sets])
                batch[key] = torch.from_numpy(self.strata[rows].astype(np.int64))
        return batch
