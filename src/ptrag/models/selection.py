"""Stage 2 of PT-RAG (cell-aware keep/drop selection) and the vanilla-RAG attention head.

PT-RAG scores every (cell, candidate) pair from r_ik = LayerNorm([f_basal(x_i); f_pert(e_p); c_k]) and
keeps a candidate with a hard Gumbel-Softmax sample during training (straight-through gradient).
At inference the decision is deterministic, l_keep > l_drop, unless sampling is asked for. Logits
are never rescaled by batch statistics, so a cell's prediction never depends on the rest of the batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ptrag.models.layers import mlp

KEEP, DROP = 0, 1


@dataclass
class Selection:
    weights: torch.Tensor  # (B, S, K) in {0, 1}; straight-through gradient in training
    keep_probability: torch.Tensor  # (B, S, K) softmax(l)[keep], for the retrieval record
    valid: torch.Tensor  # (B, K) bool


class CandidateSelector(nn.Module):
    def __init__(
        self,
        hidden_dim: int,
        tau: float = 0.5,
        combine: Literal["replace_sum", "residual_mean"] = "residual_mean",
        inference: Literal["deterministic", "sample"] = "deterministic",
    ) -> None:
        super().__init__()
        self.tau = tau
        self.combine = combine
        self.inference = inference
        self.norm = nn.LayerNorm(3 * hidden_dim)
        self.scorer = mlp(3 * hidden_dim, hidden_dim, 2, n_layers=2)
        self.context = mlp(3 * hidden_dim, hidden_dim, hidden_dim, n_layers=2)

    def select(self, logits: torch.Tensor) -> torch.Tensor:
        if self.training or self.inference == "sample":
            return F.gumbel_softmax(logits, tau=self.tau, hard=True, dim=-1)[..., KEEP]
        return (logits[..., KEEP] > logits[..., DROP]).to(logits.dtype)

    def forward(
        self,
        tokens: torch.Tensor,
        basal: torch.Tensor,
        query: torch.Tensor,
        candidates: torch.Tensor,
        valid: torch.Tensor,
    ) -> tuple[torch.Tensor, Selection]:
        """tokens/basal (B,S,H), query (B,H), candidates (B,K,H), valid (B,K) → new tokens, selection."""
        b, s, h = basal.shape
        k = candidates.shape[1]
        pair = torch.cat(
            [
                basal[:, :, None, :].expand(b, s, k, h),
                query[:, None, None, :].expand(b, s, k, h),
                candidates[:, None, :, :].expand(b, s, k, h),
            ],
            dim=-1,
        )
        r = self.norm(pair)
        logits = self.scorer(r)
        weights = self.select(logits) * valid[:, None, :].to(logits.dtype)
        context = (weights[..., None] * self.context(r)).sum(dim=2)
        if self.combine == "replace_sum":
            # The paper: the token becomes the sum of kept contexts (zero when nothing is kept).
            new_tokens = context
        else:
            kept = weights.sum(dim=2, keepdim=True).clamp_min(1.0)
            new_tokens = tokens + context / kept
        keep_probability = logits.softmax(dim=-1)[..., KEEP]
        return new_tokens, Selection(weights, keep_probability, valid)


class CandidateAttention(nn.Module):
    """Vanilla RAG: softmax cross-attention from each cell token to its K candidates."""

    def __init__(self, hidden_dim: int, n_heads: int, combine: Literal["replace", "add"] = "add") -> None:
        super().__init__()
        self.combine = combine
        self.attention = nn.MultiheadAttention(hidden_dim, n_heads, batch_first=True)

    def forward(
        self, tokens: torch.Tensor, candidates: torch.Tensor, valid: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        # A set whose candidates are all invalid attends to nothing: keep its tokens unchanged.
        any_valid = valid.any(dim=1)
        safe_valid = valid | ~any_valid[:, None]
        out, weights = self.attention(tokens, candidates, candidates, key_padding_mask=~safe_valid)
        out = out * any_valid[:, None, None].to(out.dtype)
        new_tokens = out if self.combine == "replace" else tokens + out
        return new_tokens, weights
