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
from ptrag.models.pairs import pair_dot, pair_weighted_sum

__all__ = ["CandidateAttention", "CandidateSelector", "Selection"]

KEEP, DROP = 0, 1


@dataclass
class Selection:
    weights: torch.Tensor  # (B, S, K) in {0, 1}; straight-through gradient in training
    keep_probability: torch.Tensor  # (B, S, K) softmax(l)[keep] = σ(l_keep − l_drop), for the record
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
        scope: Literal["cell", "set"] = "cell",
    ) -> None:
        super().__init__()
        self.tau = tau
        self.scope = scope
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

    def select(self, margin: torch.Tensor) -> torch.Tensor:
        """Keep weights (B,S,K) from the margin l_keep − l_drop (B,S,K).

        A softmax over (keep, drop) is the sigmoid of the margin, so every form below equals the
        two-logit one (``F.gumbel_softmax(logits, τ, hard=True)[..., KEEP]`` in training, with the
        same Gumbel draws and the same straight-through gradient) without a softmax over a size-2
        dimension, which is slow on a CPU.
        """
        if self.training and self.training_selection == "threshold":
            # The inference decision in training too (no Gumbel noise), with softmax(l/τ)'s gradient.
            soft = torch.sigmoid(margin / self.tau)
            return (margin > 0).to(margin.dtype) + soft - soft.detach()
        if self.training or self.inference == "sample":
            # One Gumbel draw for each of keep and drop, in F.gumbel_softmax's order.
            draws = torch.empty(*margin.shape, 2, dtype=margin.dtype, device=margin.device)
            gumbels = -draws.exponential_().log()
            noisy = (margin + gumbels[..., KEEP] - gumbels[..., DROP]) / self.tau
            soft = torch.sigmoid(noisy)
            return (noisy >= 0).to(margin.dtype) - soft.detach() + soft
        return (margin > 0).to(margin.dtype)

    def _pair_parts(
        self, basal: torch.Tensor, query: torch.Tensor, candidates: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Both MLPs' first Linear on LayerNorm([basal; query; candidate]), as its separable parts.

        LayerNorm followed by a Linear is affine in each of the three parts once the per-pair mean and
        variance are known: with the LayerNorm gain folded into the weight W (2H', 3H) and its bias
        into β, the pre-activation of pair (b, s, k) is (P_bs + C_bk) · r_bsk + β, where each part is
        projected at its own size and centred by its own mean (the pair mean is the average of the
        three part means): P_bs = W_basal x_bs − m_bs w/3 + W_query q_b − m_b w/3 (B,S,2H'),
        C_bk = W_cand c_bk − m_bk w/3 (B,K,2H'), w = W's row sums. r (B,S,K) is the pair's inverse
        standard deviation, from per-part statistics. Returns (P, C, r, β); ``ptrag.models.pairs``
        applies GELU and the reductions a few sets at a time, without a (B,S,K,2H') tensor.
        """
        h = basal.shape[-1]
        first = (self.scorer[0], self.context[0])
        stacked = torch.cat([layer.weight for layer in first])  # (2H', 3H): both MLPs in one matmul
        weight = stacked * self.norm.weight  # LayerNorm's gain folded into the columns
        bias = torch.cat([layer.bias for layer in first]) + stacked @ self.norm.bias
        row_sums = weight.sum(dim=1) / 3
        w_basal, w_query, w_cand = weight.split(h, dim=1)
        var_b, mean_b = torch.var_mean(basal, dim=-1, correction=0)  # (B,S)
        var_q, mean_q = torch.var_mean(query, dim=-1, correction=0)  # (B,)
        var_c, mean_c = torch.var_mean(candidates, dim=-1, correction=0)  # (B,K)
        query_part = torch.addcmul(query @ w_query.T, mean_q[:, None], row_sums, value=-1)  # (B,2H')
        cell = torch.addcmul(basal @ w_basal.T, mean_b[..., None], row_sums, value=-1) + query_part[:, None]
        candidate = torch.addcmul(candidates @ w_cand.T, mean_c[..., None], row_sums, value=-1)
        # 3·(variance + eps) = Σ_parts var + (1/3) Σ_{two parts} (difference of their means)² + 3·eps:
        # the pair's statistics from the parts' (B,S), (B,) and (B,K) ones, with no E[x²] − μ²
        # cancellation, and only the (B,S,K) gap between cell and candidate means at full size.
        gap_cell_query = mean_b - mean_q[:, None]
        gap_query_cand = mean_q[:, None] - mean_c
        spread_cell = var_b + var_q[:, None] + gap_cell_query * gap_cell_query / 3 + 3 * self.norm.eps
        spread_cand = var_c + gap_query_cand * gap_query_cand / 3
        gap = mean_b[:, :, None] - mean_c[:, None, :]
        total = torch.addcmul(spread_cell[:, :, None] + spread_cand[:, None, :], gap, gap, value=1 / 3)
        return cell, candidate, torch.rsqrt(total / 3), bias

    def forward(
        self,
        tokens: torch.Tensor,
        basal: torch.Tensor,
        query: torch.Tensor,
        candidates: torch.Tensor,
        valid: torch.Tensor,
    ) -> tuple[torch.Tensor, Selection]:
        """tokens/basal (B,S,H), query (B,H), candidates (B,K,H), valid (B,K) → new tokens, selection."""
        cell, candidate, inverse_std, bias = self._pair_parts(basal, query, candidates)
        n = self.scorer[0].out_features  # the scorer's half of the channels, then the context's
        # The scorer's last Linear, reduced to the margin l_keep − l_drop (the Dropouts have p = 0).
        last = self.scorer[3]
        margin = pair_dot(
            cell[..., :n], candidate[..., :n], inverse_std, bias[:n], last.weight[KEEP] - last.weight[DROP]
        ) + (last.bias[KEEP] - last.bias[DROP])
        if self.scope == "set":
            # One decision per (set, candidate): the cells' mean margin, shared by every cell.
            margin = margin.mean(dim=1, keepdim=True).expand_as(margin)
        weights = self.select(margin) * valid[:, None, :].to(margin.dtype)
        # sum_k w_k * context_mlp(r_k): the last (linear) layer moves outside the sum over k.
        summed = pair_weighted_sum(cell[..., n:], candidate[..., n:], inverse_std, bias[n:], weights)
        last = self.context[3]
        n_kept = weights.sum(dim=2, keepdim=True)
        context = torch.addcmul(F.linear(summed, last.weight), n_kept, last.bias)
        # The paper's replace_sum: the token becomes the sum of kept contexts (zero when nothing is
        # kept); residual_mean adds their mean.
        new_tokens = context if self.combine == "replace_sum" else tokens + context / n_kept.clamp_min(1.0)
        return new_tokens, Selection(weights, torch.sigmoid(margin), valid)


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
