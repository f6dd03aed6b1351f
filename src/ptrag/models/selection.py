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
        tau: float,
        combine: Literal["replace_sum", "residual_mean"],
        inference: Literal["deterministic", "sample"],
        keep_bias: float,
        training_selection: Literal["gumbel", "threshold"],
    ) -> None:
        super().__init__()
        self.tau = tau
        self.training_selection = training_selection
        self.combine = combine
        self.inference = inference
        self.norm = nn.LayerNorm(3 * hidden_dim)
        self.scorer = mlp(3 * hidden_dim, hidden_dim, 2, n_layers=2)
        self.context = mlp(3 * hidden_dim, hidden_dim, hidden_dim, n_layers=2)
        # Start by keeping most candidates (P(keep) = sigmoid(keep_bias)) and let training drop
        # what does not help; 0 is the paper's unbiased start.
        with torch.no_grad():
            self.scorer[-1].bias[KEEP] += keep_bias

    def select(self, logits: torch.Tensor) -> torch.Tensor:
        if self.training and self.training_selection == "threshold":
            # The inference decision in training too (no Gumbel noise), with softmax(l/τ)'s gradient.
            soft = (logits / self.tau).softmax(dim=-1)[..., KEEP]
            hard = (logits[..., KEEP] > logits[..., DROP]).to(logits.dtype)
            return hard + soft - soft.detach()
        if self.training or self.inference == "sample":
            return F.gumbel_softmax(logits, tau=self.tau, hard=True, dim=-1)[..., KEEP]
        return (logits[..., KEEP] > logits[..., DROP]).to(logits.dtype)

    def _first_layer(
        self, basal: torch.Tensor, query: torch.Tensor, candidates: torch.Tensor
    ) -> torch.Tensor:
        """Both MLPs' first Linear applied to LayerNorm([basal; query; candidate]), without the concat.

        LayerNorm followed by a Linear is affine in each of the three parts once the per-pair mean and
        variance are known, so every part is projected at its own size ((B,S,H), (B,H), (B,K,H)) and
        only the projected (B,S,K,2H) sum is formed, instead of the (B,S,K,3H) concat, its
        LayerNorm and a matmul over it. The pair statistics come from per-part statistics by the
        parallel-variance formula, which stays exact to float rounding (no E[x^2] - mu^2 cancellation).
        """
        h = basal.shape[-1]
        first = (self.scorer[0], self.context[0])
        stacked = torch.cat([layer.weight for layer in first])  # (2H', 3H): both MLPs in one matmul
        weight = stacked * self.norm.weight  # LayerNorm's gain folded into the columns
        bias = torch.cat([layer.bias for layer in first]) + stacked @ self.norm.bias
        w_basal, w_query, w_cand = weight.split(h, dim=1)
        projected = (
            (basal @ w_basal.T)[:, :, None, :]
            + (query @ w_query.T)[:, None, None, :]
            + (candidates @ w_cand.T)[:, None, :, :]
        )
        var_b, mean_b = torch.var_mean(basal, dim=-1, correction=0)  # (B,S)
        var_q, mean_q = torch.var_mean(query, dim=-1, correction=0)  # (B,)
        var_c, mean_c = torch.var_mean(candidates, dim=-1, correction=0)  # (B,K)
        mean_b, mean_q, mean_c = mean_b[:, :, None], mean_q[:, None, None], mean_c[:, None, :]
        var_b, var_q, var_c = var_b[:, :, None], var_q[:, None, None], var_c[:, None, :]
        mean = (mean_b + mean_q + mean_c) / 3  # (B,S,K)
        variance = (
            var_b + var_q + var_c + (mean_b - mean) ** 2 + (mean_q - mean) ** 2 + (mean_c - mean) ** 2
        ) / 3
        inverse_std = torch.rsqrt(variance + self.norm.eps)
        # In place: the (B,S,K,2H') sum is not needed by autograd, so no second tensor of that size.
        centred = projected.addcmul_(mean[..., None], weight.sum(dim=1), value=-1)
        return torch.addcmul(bias, centred, inverse_std[..., None])

    def _score(
        self, basal: torch.Tensor, query: torch.Tensor, candidates: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return both MLPs' hidden activations (B,S,K,2H': scorer half, then context half) and the
        keep/drop logits (B,S,K,2).

        The halves stay in one tensor: slicing them out would copy (B,S,K,H') twice. The scorer's last
        Linear reads the first half through a zero-padded weight; the Dropout layers have p = 0.
        """
        hidden = F.gelu(self._first_layer(basal, query, candidates))
        last = self.scorer[3]
        padded = F.pad(last.weight, (0, hidden.shape[-1] - last.in_features))
        logits = F.linear(self.scorer[2](hidden), padded, last.bias)
        return self.context[2](hidden), logits

    def _weighted_context(self, hidden: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """sum_k w_k * context_mlp(r_k): the last (linear) layer moves outside the sum over k."""
        summed = torch.einsum("bsk,bskh->bsh", weights, hidden)[..., self.scorer[0].out_features :]
        last = self.context[3]
        return F.linear(summed, last.weight) + weights.sum(dim=2, keepdim=True) * last.bias

    def forward(
        self,
        tokens: torch.Tensor,
        basal: torch.Tensor,
        query: torch.Tensor,
        candidates: torch.Tensor,
        valid: torch.Tensor,
    ) -> tuple[torch.Tensor, Selection]:
        """tokens/basal (B,S,H), query (B,H), candidates (B,K,H), valid (B,K) → new tokens, selection."""
        hidden, logits = self._score(basal, query, candidates)
        weights = self.select(logits) * valid[:, None, :].to(logits.dtype)
        context = self._weighted_context(hidden, weights)
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

    def __init__(self, hidden_dim: int, n_heads: int, combine: Literal["replace", "add"]) -> None:
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
