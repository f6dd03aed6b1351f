"""The factorised CandidateSelector equals DESIGN.md's r_ik = LayerNorm([basal; query; candidate]) form,
in values and gradients, at inference and in training."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ptrag.models import pairs
from ptrag.models.selection import KEEP, CandidateSelector


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


@pytest.mark.parametrize("training_selection", ["gumbel", "threshold"])
def test_selector_in_training_equals_the_reference_with_all_gradients(
    training_selection: str, monkeypatch
) -> None:
    """Training mode, where the fused pair functions also run backward, over several chunks of sets."""
    torch.manual_seed(0)
    b, s, k, h = 5, 5, 7, 16
    monkeypatch.setitem(pairs.CHUNK_ELEMENTS, "cpu", 2 * s * k * h)  # chunks of two sets
    selector = CandidateSelector(
        h, tau=0.5, combine="residual_mean", inference="deterministic", keep_bias=0.5,
        training_selection=training_selection,
    ).train()  # fmt: skip
    with torch.no_grad():  # a non-trivial LayerNorm gain and bias, so that folding them in is exercised
        selector.norm.weight.copy_(torch.rand(3 * h) + 0.5)
        selector.norm.bias.copy_(torch.randn(3 * h) * 0.3)
    inputs = [torch.randn(b, s, h), torch.randn(b, s, h) * 2, torch.randn(b, h), torch.randn(b, k, h) + 1]
    inputs = [x.requires_grad_(True) for x in inputs]
    valid = torch.rand(b, k) > 0.2
    tau = selector.tau

    def select(logits):
        if training_selection == "gumbel":
            return F.gumbel_softmax(logits, tau=tau, hard=True, dim=-1)[..., KEEP]
        soft = (logits / tau).softmax(-1)[..., KEEP]
        return (logits[..., 0] > logits[..., 1]).to(logits.dtype) + soft - soft.detach()

    torch.manual_seed(1)
    new_tokens, selection = selector(*inputs, valid)
    torch.manual_seed(1)  # the same Gumbel draws
    expected, weights, logits = reference_selection(selector, *inputs, valid, select)
    keep_probability = logits.softmax(-1)[..., KEEP]
    assert 0.2 < float(weights.detach().mean()) < 0.9  # both decisions occur
    torch.testing.assert_close(selection.weights, weights)
    torch.testing.assert_close(selection.keep_probability, keep_probability)
    torch.testing.assert_close(new_tokens, expected, rtol=1e-5, atol=1e-5)

    # A loss that reaches every output: the new tokens and the keep weights (as the sparsity term).
    parameters = list(selector.parameters())
    ours = torch.autograd.grad(new_tokens.square().sum() + selection.weights.sum(), inputs + parameters)
    theirs = torch.autograd.grad(expected.square().sum() + weights.sum(), inputs + parameters)
    for got, want in zip(ours, theirs, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
