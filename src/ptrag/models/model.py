"""Every model kind behind one interface: ST, vanilla RAG, PT-RAG and response memory.

Which parts a model has comes from its arm's kind in ``ptrag.config.arms``, not from the arm's name.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ptrag.config import Config, get_arm
from ptrag.models.generator import STGenerator
from ptrag.models.layers import mlp
from ptrag.models.retriever import Candidates, Retriever
from ptrag.models.selection import CandidateAttention, CandidateSelector, Selection


@dataclass
class ModelOutput:
    predicted: torch.Tensor  # (B, S, G) log1p expression
    candidates: Candidates | None = None
    selection: Selection | None = None  # PT-RAG and memory arms
    attention: torch.Tensor | None = None  # vanilla RAG: (B, S, K) attention weights

    def selection_rate(self) -> torch.Tensor | None:
        """Mean keep weight over valid (cell, candidate) pairs."""
        if self.selection is None:
            return None
        valid = self.selection.valid[:, None, :].expand_as(self.selection.weights)
        return self.selection.weights[valid].mean() if valid.any() else self.selection.weights.sum() * 0.0

    def kept_per_set(self) -> torch.Tensor | None:
        """Distinct candidates kept by at least one cell, per set."""
        if self.selection is None:
            return None
        return (self.selection.weights.amax(dim=1) > 0).sum(dim=1).float()


class PerturbationModel(nn.Module):
    def __init__(
        self, config: Config, generator: STGenerator, retriever: Retriever | None, n_genes: int
    ) -> None:
        super().__init__()
        self.arm = config.model.arm
        kind = get_arm(self.arm).kind
        self.uses_memory = kind.memory
        self.generator = generator
        self.retriever = retriever
        hidden = config.model.hidden_dim
        r = config.retrieval
        self.selector: CandidateSelector | None = None
        self.attention: CandidateAttention | None = None
        if kind.head == "selector":
            self.selector = CandidateSelector(hidden, r.tau, r.combine, r.inference)
        if kind.head == "attention":
            self.attention = CandidateAttention(hidden, config.model.n_heads, r.vanilla_combine)
        if kind.memory:
            self.shift_encoder = mlp(n_genes, hidden, hidden, 2)
            self.same_perturbation = nn.Embedding(2, hidden)
        if kind.retriever and retriever is None:
            raise ValueError(f"arm {self.arm!r} needs a retriever")

    def encode_candidates(self, candidates: Candidates) -> torch.Tensor:
        encoded = self.generator.pert_encoder.from_embeddings(candidates.embedding)
        if self.uses_memory:
            assert candidates.shift is not None and candidates.same_perturbation is not None
            encoded = encoded + self.shift_encoder(candidates.shift)
            encoded = encoded + self.same_perturbation(candidates.same_perturbation.long())
        return encoded

    def forward(
        self,
        control: torch.Tensor,
        pert_index: torch.Tensor,
        cell_type_index: torch.Tensor,
        batch_codes: torch.Tensor | None = None,
    ) -> ModelOutput:
        basal, query, tokens = self.generator.encode(control, pert_index, batch_codes)
        output = ModelOutput(predicted=control)
        if self.retriever is not None:
            # Retrieval runs identically in training and prediction: no training-only attribute gates it.
            candidates = self.retriever(pert_index, cell_type_index)
            if self.uses_memory:
                query_embedding = self.generator.pert_encoder.gene_embeddings[pert_index]
                candidates.cosine = F.cosine_similarity(
                    query_embedding[:, None, :], candidates.embedding, dim=-1
                )
            encoded = self.encode_candidates(candidates)
            output.candidates = candidates
            if self.selector is not None:
                tokens, output.selection = self.selector(tokens, basal, query, encoded, candidates.valid)
            elif self.attention is not None:
                tokens, output.attention = self.attention(tokens, encoded, candidates.valid)
        output.predicted = self.generator.decode(tokens, basal, control)
        return output
