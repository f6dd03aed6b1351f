"""The evidence path of the memory arm: retrieved observations enter the prediction in expression space.

Each candidate k of a query is a measured (perturbation, cell type) carrying its mean shift s_k and
the shift's per-gene squared standard error v_k. Cell i of a set receives

    e_i = JS(Σ_{k own} a_ik s_k) + Σ_{k neighbour} a_ik s_k,    a_ik = w_ik · p_k,

- w_ik ∈ {0, 1}: stage 2's keep decision for this cell and candidate (PT-RAG's selector);
- p = 2σ(u) · softmax_k(κ · log max(cos_k, ε) + β · own_k + δ_k): the mixture. β (initialised large)
  makes the query's own shift measured in other cell types dominate when it exists; otherwise p is
  the cos^κ weighting of its neighbours measured in the query's cell type (κ = 4 at initialisation,
  chosen on validation: it favours the closest neighbours more than plain cosine weights). δ_k (a
  zero-initialised correction) reweights candidates; the gain 2σ(u_k) (1 at initialisation) lets
  training shrink evidence that transfers imperfectly (line-specific parts of a shift measured in
  another cell type). β, κ, δ and u are learned;
- JS: positive-part James-Stein shrinkage per gene of the query's own measurements,
  m · max(0, 1 − c · Σ a_k² v_k / m²) with the set's mean weights and c learned: a shift is the mean
  of ~50 cells, so on the many genes a perturbation leaves alone it is pure sampling noise, removed
  where it does not stand out of that noise. Neighbours are other perturbations' responses, whose
  disagreement is not sampling noise: they are left as they are.

A dropped candidate takes its share with it (no renormalisation): dropping never amplifies what is
left, and a cell that keeps nothing gets no evidence. At initialisation, with every candidate kept,
e_i is the non-parametric estimate: the query's (noise-shrunk) mean shift in other cell types when it
exists, else the cos^κ-weighted shift of its neighbours in the query's cell type. The generator then
learns its corrections on top (ptrag.models.generator).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ptrag.models.layers import mlp
from ptrag.models.retriever import Candidates

__all__ = ["EvidencePath"]

# Cosines below this weigh as this: the log of a cosine weight must stay finite.
MIN_COSINE = 1e-3


def masked_softmax(logits: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Softmax over the valid candidates (dim 1); a query with none gets zeros rather than NaN."""
    any_valid = valid.any(dim=1, keepdim=True)
    masked = logits.masked_fill(~valid, -math.inf).masked_fill(~any_valid, 0.0)
    return torch.softmax(masked, dim=1) * any_valid


class EvidencePath(nn.Module):
    def __init__(self, hidden_dim: int, same_prior: float, sharpness: float, shrinkage: float) -> None:
        super().__init__()
        self.same_prior = nn.Parameter(torch.tensor(float(same_prior)))
        # Neighbours weigh as cos^κ: κ > 1 favours the closest (chosen on validation, then learned).
        self.log_sharpness = nn.Parameter(torch.tensor(math.log(sharpness)))
        # log c of the James-Stein factor; shrinkage 0 turns it off (and it is then not learned).
        self.log_shrinkage = nn.Parameter(torch.tensor(math.log(shrinkage))) if shrinkage > 0 else None
        # Per candidate, from its encoding and the query's: the logit correction δ and the gain's u.
        self.adjust = mlp(2 * hidden_dim, hidden_dim, 2, n_layers=2)
        nn.init.zeros_(self.adjust[-1].weight)
        nn.init.zeros_(self.adjust[-1].bias)

    def _prior_logits(self, cosine: torch.Tensor, same: torch.Tensor) -> torch.Tensor:
        log_cosine = torch.log(cosine.clamp_min(MIN_COSINE))
        return self.log_sharpness.exp() * log_cosine + self.same_prior * same.to(cosine.dtype)

    def prior_probability(
        self, cosine: torch.Tensor, same: torch.Tensor, valid: torch.Tensor
    ) -> torch.Tensor:
        """(B,K) the non-parametric mixture weights, before any learned correction."""
        return masked_softmax(self._prior_logits(cosine, same), valid)

    def _adjustments(self, encoded: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
        """``adjust([encoded_k; query])`` (B,K,2) without forming the (B,K,2H) concat: the first
        Linear's query half is applied once per query."""
        first, last = self.adjust[0], self.adjust[-1]
        w_candidate, w_query = first.weight.split(encoded.shape[-1], dim=1)
        hidden = F.linear(encoded, w_candidate, first.bias) + F.linear(query, w_query)[:, None, :]
        return last(self.adjust[2](self.adjust[1](hidden)))  # GELU, Dropout (p = 0), Linear

    def forward(
        self, keep: torch.Tensor, encoded: torch.Tensor, query: torch.Tensor, candidates: Candidates
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """keep (B,S,K), encoded (B,K,H), query (B,H) → evidence (B,S,G), its weights a (B,S,K), and
        each candidate's share of the mixture relative to the largest (B,K, detached)."""
        assert candidates.shift is not None and candidates.same_perturbation is not None
        delta, gain = self._adjustments(encoded, query).unbind(dim=-1)
        logits = self._prior_logits(candidates.cosine, candidates.same_perturbation) + delta
        mixture = masked_softmax(logits, candidates.valid) * 2.0 * torch.sigmoid(gain)
        weights = keep * mixture[:, None, :]
        share = (mixture / mixture.amax(dim=1, keepdim=True).clamp_min(1e-12)).detach()
        if self.log_shrinkage is None or candidates.noise is None:
            return torch.bmm(weights, candidates.shift), weights, share
        # The query's own measurements are noisy estimates of the very shift to predict: shrink their
        # part where it does not stand out of its sampling noise. Neighbours' shifts are other
        # perturbations' responses, whose disagreement is not sampling noise: left as they are.
        same = candidates.same_perturbation.to(weights.dtype)
        factor = self._shrinkage((weights * same[:, None, :]).mean(dim=1), candidates)
        # JS(Σ_own a_k s_k) + Σ_others a_k s_k = Σ_k a_k s'_k with s'_k = factor · s_k for the own
        # rows and s_k for the others: one (B,S,K) x (B,K,G) product, and the factor is applied
        # at (B,K,G) rather than (B,S,G) size (K < S in every preset).
        own_shift = candidates.shift * same[:, :, None]
        shifted = torch.addcmul(candidates.shift, own_shift, (factor - 1.0)[:, None, :])
        return torch.bmm(weights, shifted), weights, share

    def _shrinkage(self, weights: torch.Tensor, candidates: Candidates) -> torch.Tensor:
        """(B,G) James-Stein factor of the set's mean mixture, max(0, 1 − c · Σ a² v / m²).

        One factor per set and gene, applied to every cell's mixture: cells of a set differ only in
        which candidates they keep, and a per-cell factor would cost a (B,S,G) computation for that.
        """
        assert candidates.noise is not None and self.log_shrinkage is not None
        mean = torch.bmm(weights[:, None, :], candidates.shift)[:, 0]
        variance = torch.bmm((weights * weights)[:, None, :], candidates.noise)[:, 0]
        factor = 1.0 - self.log_shrinkage.exp() * variance / (mean * mean).clamp_min(1e-12)
        return factor.clamp_min(0.0)
