"""Tests that pin the method (DESIGN.md §2–§4) and guard against the authors' code defects."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ptrag.config import ARMS, load_config
from ptrag.retrieval import RetrievalDatabase
from ptrag.run.build import build_model
from ptrag.run.spec import ModelSpec
from ptrag.training.module import PerturbationLightningModule


def _config(arm: str, *extra: str):
    return load_config(
        None,
        [
            f"model.arm={arm}",
            "model.hidden_dim=16",
            "model.n_layers=1",
            "model.n_heads=2",
            "retrieval.top_k=4",
            *extra,
        ],
    )


def _forward(model, batch):
    return model.on_batch(batch)


def test_retrieved_candidates_never_include_the_query(spec: ModelSpec) -> None:
    model = build_model(_config("ptrag"), spec)
    table = model.retriever.neighbour_index.numpy()
    valid = model.retriever.neighbour_valid.numpy()
    database_names = spec.database.perturbations
    for v, name in enumerate(spec.vocabulary):
        retrieved = {database_names[j] for j, ok in zip(table[v], valid[v], strict=True) if ok}
        assert name not in retrieved
        assert retrieved <= set(database_names)
    # Held-out perturbations (P9..P11) are never candidates of anyone.
    assert not set(np.unique(table)) & {9, 10, 11}


def test_memory_candidates_exclude_the_query_row(spec: ModelSpec) -> None:
    model = build_model(_config("memory"), spec)
    r = model.retriever
    memory = spec.memory
    for v, name in enumerate(spec.vocabulary):
        for c, cell_type in enumerate(spec.cell_types):
            rows = r.memory_index[v, c][r.memory_valid[v, c]].tolist()
            pairs = {(memory.perturbations[j], memory.cell_types[j]) for j in rows}
            assert (name, cell_type) not in pairs
            same = r.memory_same[v, c][r.memory_valid[v, c]].tolist()
            for j, is_same in zip(rows, same, strict=True):
                assert is_same == (memory.perturbations[j] == name)


def test_straight_through_gradient_reaches_the_scorer(spec: ModelSpec, make_batch) -> None:
    module = PerturbationLightningModule(_config("ptrag"), spec)
    module.train()
    distribution, sparsity, _ = module.losses(make_batch())
    (distribution + sparsity).backward()
    scorer_grads = [p.grad for p in module.model.selector.scorer.parameters()]
    assert all(g is not None for g in scorer_grads)
    assert sum(float(g.abs().sum()) for g in scorer_grads) > 0


def test_the_set_mean_term_is_its_weight_times_the_mse_of_set_means(spec: ModelSpec, make_batch) -> None:
    batch = make_batch()
    off = PerturbationLightningModule(_config("st"), spec)
    on = PerturbationLightningModule(_config("st", "model.mean_loss_weight=2.5"), spec)
    on.load_state_dict(off.state_dict())
    output = on(batch)
    gap = output.predicted.mean(dim=1) - batch["target"].mean(dim=1)
    assert float(on.mean_loss(output, batch)) == pytest.approx(2.5 * float((gap**2).mean()), rel=1e-5)
    assert float(off.mean_loss(output, batch)) == 0.0


@pytest.mark.parametrize("mode", ["absolute", "relative"])
def test_sparsity_term_is_lambda_times_selection_rate(spec: ModelSpec, make_batch, mode: str) -> None:
    settings = ("retrieval.sparsity_weight=0.37", f"retrieval.sparsity={mode}", "retrieval.keep_bias=0")
    module = PerturbationLightningModule(_config("ptrag", *settings), spec)
    module.train()
    torch.manual_seed(1)
    distribution, sparsity, output = module.losses(make_batch())
    rate = output.selection_rate()
    weights = output.selection.weights
    valid = output.selection.valid[:, None, :].expand_as(weights)
    assert float(rate) == pytest.approx(float(weights[valid].mean()))
    assert 0.0 < float(rate) < 1.0
    # Relative: on the distributional loss's own scale, so it can never outweigh it.
    scale = float(distribution) if mode == "relative" else 1.0
    assert float(sparsity) == pytest.approx(0.37 * float(rate) * scale, rel=1e-6)
    if mode == "relative":
        assert float(sparsity) < 0.37 * float(distribution)


@pytest.mark.parametrize("arm", list(ARMS))
def test_inference_is_deterministic_and_independent_of_the_rest_of_the_batch(
    spec: ModelSpec, arm: str, make_batch
) -> None:
    model = build_model(_config(arm), spec).eval()
    batch = make_batch(n_sets=4)
    with torch.no_grad():
        first = _forward(model, batch).predicted
        second = _forward(model, batch).predicted
        alone = _forward(model, {k: v[:1] for k, v in batch.items()}).predicted
    assert torch.equal(first, second)
    torch.testing.assert_close(alone[0], first[0], rtol=1e-5, atol=1e-5)


def test_training_selection_is_stochastic_but_inference_selection_is_not(spec: ModelSpec, make_batch) -> None:
    model = build_model(_config("ptrag"), spec)
    batch = make_batch()
    model.train()
    samples = [_forward(model, batch).selection.weights for _ in range(4)]
    assert any(not torch.equal(samples[0], s) for s in samples[1:])
    model.eval()
    with torch.no_grad():
        weights = _forward(model, batch).selection.weights
        probability = _forward(model, batch).selection.keep_probability
    valid = model.retriever.neighbour_valid[batch["pert_index"]][:, None, :]
    assert torch.equal(weights, ((probability > 0.5) & valid).float())


@pytest.mark.parametrize("arm", ["vanilla_rag", "ptrag"])
def test_retrieval_is_used_at_prediction_time(spec: ModelSpec, arm: str, make_batch) -> None:
    """Changing the database changes the output in eval mode (the authors' vanilla RAG skipped it)."""
    config = _config(arm)
    torch.manual_seed(0)
    model = build_model(config, spec).eval()
    with torch.no_grad():
        for p in model.parameters():  # make the retrieval path matter from initialisation
            p.add_(torch.randn_like(p) * 0.1)
    batch = make_batch()
    with torch.no_grad():
        before = _forward(model, batch).predicted.clone()
    rng = np.random.default_rng(5)
    other = RetrievalDatabase.build(
        spec.database.perturbations, rng.normal(size=spec.database.embeddings.shape)
    )
    model.retriever.database_embeddings.copy_(torch.from_numpy(other.embeddings))
    with torch.no_grad():
        after = _forward(model, batch).predicted
    assert (before - after).abs().max() > 1e-4


@pytest.mark.parametrize("arm", list(ARMS))
def test_predictions_are_permutation_equivariant_over_cells(spec: ModelSpec, arm: str, make_batch) -> None:
    """No positional encoding and bidirectional attention: permuting cells permutes predictions."""
    model = build_model(_config(arm), spec).eval()
    batch = make_batch(n_sets=2, set_len=6)
    perm = torch.randperm(6, generator=torch.Generator().manual_seed(3))
    permuted = dict(batch, control=batch["control"][:, perm], batch_codes=batch["batch_codes"][:, perm])
    with torch.no_grad():
        out = _forward(model, batch).predicted
        out_perm = _forward(model, permuted).predicted
    torch.testing.assert_close(out[:, perm], out_perm, rtol=1e-5, atol=1e-5)


def test_expression_residual_keeps_each_control_cell_at_initialisation(spec: ModelSpec, make_batch) -> None:
    model = build_model(_config("st"), spec).eval()
    batch = make_batch()
    with torch.no_grad():
        predicted = _forward(model, batch).predicted
    torch.testing.assert_close(predicted, batch["control"])


@pytest.mark.parametrize("grad", [False, True])
def test_output_activation_none_keeps_negative_values_and_relu_clips_them(
    spec: ModelSpec, make_batch, grad: bool
) -> None:
    batch = make_batch()
    batch["control"] = batch["control"] - 1.5  # a third of the values below zero
    outputs = {}
    for activation in ("relu", "none"):
        model = build_model(_config("st", f"model.output_activation={activation}"), spec)
        model.eval()
        with torch.set_grad_enabled(grad):
            outputs[activation] = _forward(model, batch).predicted.detach()
    torch.testing.assert_close(outputs["none"], batch["control"])
    torch.testing.assert_close(outputs["relu"], batch["control"].clamp_min(0.0))
    assert (outputs["none"] < 0).float().mean() > 0.2


def test_set_scope_selection_gives_every_cell_of_a_set_the_same_decisions(
    spec: ModelSpec, make_batch
) -> None:
    batch = make_batch(n_sets=4, set_len=6)
    selections = {}
    for scope in ("cell", "set"):
        config = _config("ptrag", f"retrieval.selection_scope={scope}", "retrieval.keep_bias=0")
        # Seeded before the model is built, so both scopes score with the same weights.
        torch.manual_seed(0)
        model = build_model(config, spec)
        for layer in (model.selector.scorer[0], model.selector.scorer[-1]):  # margins that differ by cell
            torch.nn.init.normal_(layer.weight, std=0.5)
        model.eval()
        with torch.no_grad():
            selections[scope] = _forward(model, batch).selection
    # Per cell, each cell's keep probability is its own (whether or not the hard decisions happen
    # to agree); per set, every cell of a set shares the set's decision and probability.
    cell = selections["cell"].keep_probability
    assert (cell - cell[:, :1]).abs().max() > 1e-3
    for values in (selections["set"].weights, selections["set"].keep_probability):
        torch.testing.assert_close(values, values[:, :1].expand_as(values))


def test_cell_gain_starts_at_one_and_scales_each_cells_evidence(spec: ModelSpec, make_batch) -> None:
    batch = make_batch()
    plain = build_model(_config("memory"), spec).eval()
    gained = build_model(_config("memory", "retrieval.cell_gain=true"), spec).eval()
    gained.load_state_dict(plain.state_dict(), strict=False)
    with torch.no_grad():
        torch.testing.assert_close(_forward(gained, batch).predicted, _forward(plain, batch).predicted)
        torch.nn.init.normal_(gained.cell_gain[-1].weight, std=1.0)
        moved = _forward(gained, batch).predicted - _forward(plain, batch).predicted
    per_cell = moved.abs().mean(dim=-1)
    assert (per_cell > 1e-4).all() and (per_cell.std(dim=1) > 1e-5).all()
