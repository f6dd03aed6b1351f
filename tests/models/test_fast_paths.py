"""The fast formulations of stage 2's pair layer, the evidence path and candidate encoding equal
straightforward reference implementations written here, in values and in gradients (the selector as a
whole: tests/models/test_selector_formula.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ptrag.config import load_config
from ptrag.models import pairs
from ptrag.models.evidence import masked_softmax
from ptrag.models.selection import CandidateSelector
from ptrag.retrieval import ResponseMemory
from ptrag.run.build import build_model
from ptrag.run.spec import ModelSpec

SMALL = ("model.hidden_dim=16", "model.n_layers=1", "model.n_heads=2", "retrieval.top_k=6")


def reference_pair_hidden(cell, candidate, inverse_std, bias) -> torch.Tensor:
    """The whole (B,S,K,J) hidden layer, as the fused functions never form it."""
    return F.gelu((cell[:, :, None, :] + candidate[:, None, :, :]) * inverse_std[..., None] + bias)


def test_pair_functions_have_the_reference_values_and_exact_gradients(monkeypatch) -> None:
    torch.manual_seed(0)
    b, s, k, j = 5, 4, 3, 6
    monkeypatch.setitem(pairs.CHUNK_ELEMENTS, "cpu", 2 * s * k * j)  # three chunks of at most two sets
    args = [
        torch.randn(b, s, j, dtype=torch.float64),
        torch.randn(b, k, j, dtype=torch.float64),
        torch.rand(b, s, k, dtype=torch.float64) + 0.5,
        torch.randn(j, dtype=torch.float64),
    ]
    vector, weights = torch.randn(j, dtype=torch.float64), torch.rand(b, s, k, dtype=torch.float64)
    hidden = reference_pair_hidden(*args)
    torch.testing.assert_close(pairs.pair_dot(*args, vector), hidden @ vector)
    torch.testing.assert_close(pairs.pair_weighted_sum(*args, weights), (weights[..., None] * hidden).sum(2))
    inputs = [x.requires_grad_(True) for x in (*args, vector, weights)]
    assert torch.autograd.gradcheck(pairs.pair_dot, inputs[:5])
    assert torch.autograd.gradcheck(pairs.pair_weighted_sum, [*inputs[:4], inputs[5]])


def reference_evidence(path, keep, encoded, query, candidates) -> torch.Tensor:
    """The evidence as ptrag.models.evidence's docstring writes it: JS(own part) + neighbours' part."""
    pairs_ = torch.cat([encoded, query[:, None, :].expand_as(encoded)], dim=-1)
    delta, gain = path.adjust(pairs_).unbind(dim=-1)
    logits = path._prior_logits(candidates.cosine, candidates.same_perturbation) + delta
    weights = keep * (masked_softmax(logits, candidates.valid) * 2.0 * torch.sigmoid(gain))[:, None, :]
    same = candidates.same_perturbation.to(weights.dtype)[:, None, :]
    own = torch.einsum("bsk,bkg->bsg", weights * same, candidates.shift)
    others = torch.einsum("bsk,bkg->bsg", weights * (1 - same), candidates.shift)
    mean = torch.einsum("bk,bkg->bg", (weights * same).mean(dim=1), candidates.shift)
    variance = torch.einsum("bk,bkg->bg", (weights * same).mean(dim=1) ** 2, candidates.noise)
    factor = (1 - path.log_shrinkage.exp() * variance / (mean * mean).clamp_min(1e-12)).clamp_min(0.0)
    return own * factor[:, None, :] + others


def test_evidence_equals_the_reference_with_all_gradients(spec: ModelSpec) -> None:
    rng = np.random.default_rng(1)
    noise = rng.uniform(0.01, 0.5, size=spec.memory.shifts.shape).astype(np.float32)
    memory = ResponseMemory(spec.memory.perturbations, spec.memory.cell_types, spec.memory.shifts, noise)
    noisy = ModelSpec(**{**spec.__dict__, "memory": memory})
    model = build_model(load_config(None, ["model.arm=memory", *SMALL, "retrieval.same_prior=1"]), noisy)
    torch.manual_seed(0)
    with torch.no_grad():  # non-zero learned corrections
        model.evidence.adjust[-1].weight.normal_(0, 0.5)
    pert, cell_type = torch.tensor([1, 2, 10, 4]), torch.tensor([0, 1, 0, 1])
    candidates = model.retriever(pert, cell_type)
    assert candidates.same_perturbation.any() and (~candidates.same_perturbation).any()
    encoded = model.encode_candidates(candidates).detach().requires_grad_(True)
    query = model.generator.pert_encoder(pert).detach().requires_grad_(True)
    keep = (torch.rand(4, 5, candidates.index.shape[1]) > 0.3).float().requires_grad_(True)
    evidence, _, _ = model.evidence(keep, encoded, query, candidates)
    expected = reference_evidence(model.evidence, keep, encoded, query, candidates)
    torch.testing.assert_close(evidence, expected)
    direction = torch.randn_like(evidence)
    inputs = [keep, encoded, query, *model.evidence.parameters()]
    ours = torch.autograd.grad((evidence * direction).sum(), inputs)
    theirs = torch.autograd.grad((expected * direction).sum(), inputs)
    for got, want in zip(ours, theirs, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("arm", ["ptrag", "memory"])
def test_encoding_each_database_row_once_equals_encoding_each_candidate(spec: ModelSpec, arm: str) -> None:
    model = build_model(load_config(None, [f"model.arm={arm}", *SMALL]), spec).train()
    pert, cell_type = torch.tensor([1, 2, 10, 4]), torch.tensor([0, 1, 0, 1])
    candidates = model.retriever(pert, cell_type)
    assert candidates.index.numel() > model.retriever.database_embeddings.shape[0]  # the table path
    table = model.encode_candidates(candidates)
    direct_rows = candidates.database_row
    candidates.database_row = None  # forces one encoding per candidate
    direct = model.encode_candidates(candidates)
    candidates.database_row = direct_rows
    torch.testing.assert_close(table, direct)
    parameters = list(model.generator.pert_encoder.parameters())
    direction = torch.randn_like(table)
    ours = torch.autograd.grad((table * direction).sum(), parameters)
    theirs = torch.autograd.grad((direct * direction).sum(), parameters)
    for got, want in zip(ours, theirs, strict=True):
        torch.testing.assert_close(got, want)


def test_selector_trains_under_mixed_precision_autocast() -> None:
    """train.precision = "bf16-mixed" (or 16-mixed on a GPU): the fused pair functions compute in
    float32 whatever autocast hands them, and return gradients of the inputs' dtypes."""
    torch.manual_seed(0)
    selector = CandidateSelector(
        16, tau=0.5, combine="residual_mean", inference="deterministic", keep_bias=1.0,
        training_selection="gumbel",
    ).train()  # fmt: skip
    inputs = [torch.randn(3, 5, 16), torch.randn(3, 5, 16), torch.randn(3, 16), torch.randn(3, 7, 16)]
    inputs = [x.requires_grad_(True) for x in inputs]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        new_tokens, selection = selector(*inputs, torch.ones(3, 7, dtype=torch.bool))
    (new_tokens.float().square().sum() + selection.weights.float().sum()).backward()
    for tensor in [*inputs, *selector.parameters()]:
        assert tensor.grad is not None and tensor.grad.dtype == torch.float32
        assert torch.isfinite(tensor.grad).all()
