"""The factorised CandidateSelector equals DESIGN.md's r_ik = LayerNorm([basal; query; candidate]) form."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ptrag.models.selection import CandidateSelector


def reference_selection(selector: CandidateSelector, tokens, basal, query, candidates, valid, weights_fn):
    """The method as written: concat every (cell, candidate) pair, LayerNorm, scorer and context MLPs."""
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
    r = selector.norm(pair)
    logits = selector.scorer(r)
    weights = weights_fn(logits) * valid[:, None, :].to(logits.dtype)
    context = (weights[..., None] * selector.context(r)).sum(dim=2)
    if selector.combine == "replace_sum":
        return context, weights, logits
    return tokens + context / weights.sum(dim=2, keepdim=True).clamp_min(1.0), weights, logits


@pytest.mark.parametrize("combine", ["residual_mean", "replace_sum"])
def test_factorised_selector_matches_the_concat_formula(combine: str) -> None:
    torch.manual_seed(0)
    b, s, k, h = 3, 5, 7, 16
    selector = CandidateSelector(
        h, tau=0.5, combine=combine, inference="deterministic", keep_bias=1.5, training_selection="gumbel"
    ).eval()
    with torch.no_grad():  # non-trivial LayerNorm gain and bias so that folding them in is exercised
        selector.norm.weight.copy_(torch.rand(3 * h) + 0.5)
        selector.norm.bias.copy_(torch.randn(3 * h) * 0.3)
    tokens, basal = torch.randn(b, s, h), torch.randn(b, s, h) * 2
    query, candidates = torch.randn(b, h), torch.randn(b, k, h) + 1
    valid = torch.rand(b, k) > 0.2
    inputs = [x.requires_grad_(True) for x in (tokens, basal, query, candidates)]

    new_tokens, selection = selector(*inputs, valid)
    expected, weights, logits = reference_selection(
        selector, *inputs, valid, lambda lg: (lg[..., 0] > lg[..., 1]).to(lg.dtype)
    )
    torch.testing.assert_close(selection.weights, weights)
    torch.testing.assert_close(selection.keep_probability, logits.softmax(-1)[..., 0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(new_tokens, expected, rtol=1e-5, atol=1e-5)

    # replace_sum ignores the incoming tokens, so their gradient is absent on both sides.
    grads = torch.autograd.grad(new_tokens.square().sum(), inputs, allow_unused=True)
    expected_grads = torch.autograd.grad(expected.square().sum(), inputs, allow_unused=True)
    for got, want in zip(grads, expected_grads, strict=True):
        assert (got is None) == (want is None)
        if got is not None:
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    assert isinstance(selector.context[-1], nn.Linear)
