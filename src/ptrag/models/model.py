"""Every model kind behind one interface: ST, vanilla RAG, PT-RAG and the evidence memory.

Which parts a model has comes from its arm's kind in ``ptrag.config.arms``, not from the arm's name.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from ptrag.config import Config, get_arm
from ptrag.models.evidence import EvidencePath
from ptrag.models.generator import STGenerator
from ptrag.models.layers import mlp
from ptrag.models.retriever import Candidates, Retriever
from ptrag.models.selection import CandidateAttention, CandidateSelector, Selection

__all__ = ["ModelOutput", "PerturbationModel"]


@dataclass
class ModelOutput:
    predicted: torch.Tensor  # (B, S, G) log1p expression
    candidates: Candidates | None = None
    selection: Selection | None = None  # PT-RAG and memory arms
    attention: torch.Tensor | None = None  # vanilla RAG: (B, S, K) attention weights
    evidence_weights: torch.Tensor | None = None  # memory arm: (B, S, K) weight of each candidate's shift
    # Memory arm: (B, K) each candidate's share of its query's evidence mixture relative to the
    # largest share (detached); the sparsity term charges a kept candidate 1 − this.
    evidence_share: torch.Tensor | None = None

    def _mean_over_valid_pairs(self, values: torch.Tensor) -> torch.Tensor:
        """Mean of (B, S, K) ``values`` over valid (cell, candidate) pairs; 0 when none is valid.

        A masked sum over a count rather than boolean indexing: no data-dependent shape, so no host
        synchronisation on a GPU.
        """
        assert self.selection is not None
        valid = self.selection.valid[:, None, :].to(values.dtype)
        count = valid.sum() * values.shape[1]
        return (values * valid).sum() / count.clamp_min(1.0)

    def selection_rate(self) -> torch.Tensor | None:
        """Mean keep weight over valid (cell, candidate) pairs."""
        if self.selection is None:
            return None
        return self._mean_over_valid_pairs(self.selection.weights)

    def charged_rate(self) -> torch.Tensor | None:
        """What the sparsity term charges: the selection rate, each kept evidence candidate weighted
        by the share of the mixture it does NOT carry. Keeping the query's own measurement costs
        nothing; keeping a neighbour that carries almost no weight costs what PT-RAG charges."""
        if self.selection is None or self.evidence_share is None:
            return self.selection_rate()
        return self._mean_over_valid_pairs(self.selection.weights * (1.0 - self.evidence_share)[:, None, :])

    def kept_per_set(self) -> torch.Tensor | None:
        """Distinct candidates kept by at least one cell, per set."""
        if self.selection is None:
            return None
        return (self.selection.weights.amax(dim=1) > 0).sum(dim=1).float()


# Cosine, same-perturbation flag, share of the evidence mixture, evidence noise.
N_MEMORY_FEATURES = 4


class PerturbationModel(nn.Module):
    def __init__(
        self, config: Config, generator: STGenerator, retriever: Retriever | None
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
        self.same_dropout = r.same_dropout
        self.candidate_features: nn.Linear | None = None
        self.evidence: EvidencePath | None = None
        if kind.head == "selector":
            self.selector = CandidateSelector(
                hidden, r.tau, r.combine, r.inference, r.keep_bias, r.training_selection, r.selection_scope
            )
            if r.candidate_features:
                self.candidate_features = nn.Linear(N_MEMORY_FEATURES if kind.memory else 1, hidden)
        if kind.head == "attention":
            self.attention = CandidateAttention(hidden, config.model.n_heads, r.vanilla_combine)
        self.cell_gain: nn.Module | None = None
        if kind.memory:
            self.same_perturbation = nn.Embedding(2, hidden)
            self.evidence = EvidencePath(hidden, r.same_prior, r.sharpness, r.shrinkage)
            if r.cell_gain:
                # Zero last layer: every gain starts at 2σ(0) = 1, the evidence as it was.
                self.cell_gain = mlp(2 * hidden, hidden, 1, n_layers=2)
                nn.init.zeros_(self.cell_gain[-1].weight)
                nn.init.zeros_(self.cell_gain[-1].bias)
        if kind.retriever and retriever is None:
            raise ValueError(f"arm {self.arm!r} needs a retriever")

    def _features(self, candidates: Candidates) -> torch.Tensor:
        """What the scorer needs to judge a candidate, beyond its gene embedding (B, K, F)."""
        if self.evidence is None:
            return candidates.cosine[..., None]
        assert candidates.same_perturbation is not None and candidates.noise is not None
        share = self.evidence.prior_probability(
            candidates.cosine, candidates.same_perturbation, candidates.valid
        )
        # Logs divided by a typical magnitude so that every feature is O(1).
        return torch.stack(
            [
                candidates.cosine,
                candidates.same_perturbation.to(candidates.cosine.dtype),
                torch.log(share.clamp_min(1e-6)) / 6.0,
                torch.log(candidates.noise.mean(dim=-1).clamp_min(1e-8)) / 6.0,
            ],
            dim=-1,
        )

    def _encode_embeddings(self, candidates: Candidates) -> torch.Tensor:
        """f_pert of every candidate's gene embedding (B, K, H).

        When the database has fewer rows than the batch has candidates (B·K = 2,048 at the paper's
        shape), each database row is encoded once and gathered: the same values for a fraction of
        the work, with no data-dependent shape (no host synchronisation on a GPU). Not with active
        dropout, which draws a mask per candidate.
        """
        encoder = self.generator.pert_encoder
        assert self.retriever is not None
        table = self.retriever.database_embeddings
        rows = candidates.database_row
        dropout = self.training and any(isinstance(m, nn.Dropout) and m.p > 0 for m in encoder.project)
        if rows is not None and not dropout and table.shape[0] < rows.numel():
            return encoder.from_embeddings(table)[rows]
        return encoder.from_embeddings(candidates.embedding)

    def encode_candidates(self, candidates: Candidates) -> torch.Tensor:
        encoded = self._encode_embeddings(candidates)
        if self.uses_memory:
            # A candidate's evidence reaches the scorer as what judges it (same perturbation, share,
            # noise: the features below), not as its 2,000-gene shift: encoding the shift itself
            # measured worse on validation (it lets the scorer memorise training responses).
            assert candidates.same_perturbation is not None
            encoded = encoded + self.same_perturbation(candidates.same_perturbation.long())
        if self.candidate_features is not None:
            encoded = encoded + self.candidate_features(self._features(candidates))
        return encoded

    def on_batch(self, batch: Mapping[str, torch.Tensor]) -> ModelOutput:
        """Run on a batch as ``ptrag.run.tensors.SetTensorizer`` makes it (training and prediction)."""
        return self(
            batch["control"],
            batch["pert_index"],
            batch["cell_type_index"],
            batch["batch_codes"],
            batch.get("control_mean"),
            batch.get("anchor_cells"),
            batch.get("input_mean"),
        )

    def forward(
        self,
        control: torch.Tensor,
        pert_index: torch.Tensor,
        cell_type_index: torch.Tensor,
        batch_codes: torch.Tensor | None = None,
        control_mean: torch.Tensor | None = None,
        anchor_cells: torch.Tensor | None = None,
        input_mean: torch.Tensor | None = None,
    ) -> ModelOutput:
        basal, query, tokens = self.generator.encode(control, pert_index, batch_codes)
        output = ModelOutput(predicted=control)
        evidence = None
        if self.retriever is not None:
            # Retrieval runs identically in training and prediction: no training-only attribute gates it.
            candidates = self.retriever(pert_index, cell_type_index)
            if self.training and self.same_dropout > 0 and candidates.same_perturbation is not None:
                hidden = torch.rand(len(pert_index), device=pert_index.device) < self.same_dropout
                candidates.valid = candidates.valid & ~(candidates.same_perturbation & hidden[:, None])
            encoded = self.encode_candidates(candidates)
            output.candidates = candidates
            if self.selector is not None:
                tokens, output.selection = self.selector(tokens, basal, query, encoded, candidates.valid)
            elif self.attention is not None:
                tokens, output.attention = self.attention(tokens, encoded, candidates.valid)
            if self.evidence is not None:
                assert output.selection is not None
                evidence, output.evidence_weights, output.evidence_share = self.evidence(
                    output.selection.weights, encoded, query, candidates
                )
                if self.cell_gain is not None:
                    state = torch.cat([basal, query[:, None, :].expand_as(basal)], dim=-1)
                    evidence = evidence * (2.0 * torch.sigmoid(self.cell_gain(state)))
        output.predicted = self.generator.decode(
            tokens, basal, control, control_mean, evidence, anchor_cells, input_mean
        )
        return output
