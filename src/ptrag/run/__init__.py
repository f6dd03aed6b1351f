"""The trained run: below training and prediction, which both build on it.

- ``spec``: the ModelSpec (genes, vocabulary, cell types, batches, database, memory);
- ``build``: ``build_model(config, spec)`` and loading trained weights;
- ``groups``: the single definition of a run's (cell type, perturbation) groups per role;
- ``vocabulary``: embedding perturbations under the run's policy, covering unseen ones;
- ``checkpoint``: the checkpoint format, atomic writing, reading, ``Checkpoint.load``;
- ``layout``: the run directory's files; ``tensors``: cell sets as model inputs;
- ``threads``: torch's CPU threads.
"""

from ptrag.run.build import build_model, load_weights
from ptrag.run.checkpoint import Checkpoint, read_checkpoint, write_checkpoint
from ptrag.run.spec import ModelSpec

__all__ = ["Checkpoint", "ModelSpec", "build_model", "load_weights", "read_checkpoint", "write_checkpoint"]
