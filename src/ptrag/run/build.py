"""Build a model from a config and a ModelSpec; load trained weights into it.

The arm's kind (``ptrag.config.arms``) says which parts the model has; the spec fixes their shapes.
Buffers derived from the spec (the vocabulary's embeddings, neighbour tables, memory rows) are not
part of a state dict, so weights load into a model whose spec grew by unseen perturbations or cell
types without any special case but the one-hot table's vocabulary rows.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from ptrag.config import Config, get_arm
from ptrag.models.generator import STGenerator
from ptrag.models.model import PerturbationModel
from ptrag.models.retriever import Retriever
from ptrag.run.spec import ModelSpec

__all__ = ["build_model", "load_weights"]

# Parameters with one row per vocabulary entry: rows of perturbations added after training start at 0.
_VOCABULARY_ROWS = ("generator.pert_encoder.table.weight",)


def build_model(config: Config, spec: ModelSpec) -> PerturbationModel:
    m = config.model
    kind = get_arm(m.arm).kind
    generator = STGenerator(
        n_genes=len(spec.genes),
        gene_embeddings=torch.from_numpy(spec.vocabulary_embeddings),
        n_batches=len(spec.batches),
        hidden_dim=m.hidden_dim,
        n_layers=m.n_layers,
        n_heads=m.n_heads,
        ff_mult=m.ff_mult,
        dropout=m.dropout,
        encoder_layers=m.encoder_layers,
        pert_encoding=m.pert_encoding,
        use_batch=m.use_batch,
        output_residual=m.output_residual,
        output_activation=m.output_activation,
        anchor=m.anchor,
    )
    retriever = None
    if kind.retriever:
        retriever = Retriever(
            spec.database,
            spec.vocabulary,
            spec.vocabulary_embeddings,
            config.retrieval.top_k,
            memory=spec.memory if kind.memory else None,
            cell_types=spec.cell_types,
            candidates=config.retrieval.candidates,
        )
    return PerturbationModel(config, generator, retriever)


def load_weights(model: PerturbationModel, state_dict: Mapping[str, torch.Tensor]) -> None:
    """Load trained weights into a model whose vocabulary may be larger than the trained one."""
    own = model.state_dict()
    unknown = sorted(set(state_dict) - set(own))
    if unknown:
        raise ValueError(f"checkpoint parameters the model does not have: {unknown[:5]}")
    for key, value in state_dict.items():
        target = own[key]
        if key in _VOCABULARY_ROWS and target.shape[0] >= value.shape[0]:
            target.zero_()
            target[: value.shape[0]] = value
        elif target.shape == value.shape:
            target.copy_(value)
        else:
            raise ValueError(
                f"parameter {key}: checkpoint shape {tuple(value.shape)} != {tuple(target.shape)}"
            )
    model.load_state_dict(own)
