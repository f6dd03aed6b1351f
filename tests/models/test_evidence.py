"""The evidence path and anchoring: what the memory arm adds to a prediction, in expression space."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ptrag.config import load_config
from ptrag.models.evidence import MIN_COSINE
from ptrag.retrieval import ResponseMemory
from ptrag.run.build import build_model
from ptrag.run.spec import ModelSpec
from ptrag.training.module import PerturbationLightningModule

SMALL = ("model.hidden_dim=16", "model.n_layers=1", "model.n_heads=2", "retrieval.top_k=6")


def _model(spec: ModelSpec, *extra: str, arm: str = "memory"):
    return build_model(load_config(None, [f"model.arm={arm}", *SMALL, *extra]), spec).eval()


def _candidates(model, pert: int, cell_type: int):
    return model.retriever(torch.tensor([pert]), torch.tensor([cell_type]))


def _evidence(model, pert: int, cell_type: int, keep: torch.Tensor | None = None) -> np.ndarray:
    """The evidence (S=1 cell) the model adds for a query, all candidates kept unless ``keep``."""
    candidates = _candidates(model, pert, cell_type)
    k = candidates.index.shape[1]
    keep = torch.ones(1, 1, k) if keep is None else keep
    encoded = model.encode_candidates(candidates)
    query = model.generator.pert_encoder(torch.tensor([pert]))
    with torch.no_grad():
        evidence, weights, _ = model.evidence(keep, encoded, query, candidates)
    return evidence[0, 0].numpy(), weights[0, 0].numpy(), candidates


def test_at_initialisation_the_evidence_is_the_non_parametric_estimate(spec: ModelSpec) -> None:
    model = _model(spec, "retrieval.shrinkage=0", "retrieval.same_prior=40")
    memory = spec.memory
    row = {(p, c): i for i, (p, c) in enumerate(zip(memory.perturbations, memory.cell_types, strict=True))}
    # P1 in "a" was measured in "b": the evidence is that measurement.
    evidence, _, _ = _evidence(model, 1, 0)
    np.testing.assert_allclose(evidence, memory.shifts[row[("P1", "b")]], atol=1e-5)
    # P10 is held out everywhere: the cos^κ-weighted mean of its neighbours measured in "a".
    evidence, weights, candidates = _evidence(model, 10, 0)
    cosine = candidates.cosine[0].numpy()
    kappa = load_config(None, []).retrieval.sharpness
    expected = np.maximum(cosine, MIN_COSINE) ** kappa
    expected /= expected.sum()
    np.testing.assert_allclose(weights, expected, rtol=1e-5)
    shifts = memory.shifts[candidates.index[0].numpy()]
    np.testing.assert_allclose(evidence, expected @ shifts, atol=1e-5)
    assert all(memory.cell_types[r] == "a" for r in candidates.index[0].tolist())


def test_own_measurements_shrink_where_they_do_not_stand_out_of_their_noise(spec: ModelSpec) -> None:
    noise = np.full_like(spec.memory.shifts, 0.25)  # standard error 0.5 on every gene
    memory = ResponseMemory(spec.memory.perturbations, spec.memory.cell_types, spec.memory.shifts, noise)
    grown = ModelSpec(**{**spec.__dict__, "memory": memory})
    model = _model(grown, "retrieval.same_prior=40", "retrieval.shrinkage=2")
    evidence, _, _ = _evidence(model, 1, 0)
    shift = memory.shifts[memory.perturbations.index("P1") + 9]  # P1@b
    expected = shift * np.maximum(0.0, 1.0 - 2.0 * 0.25 / shift**2)
    np.testing.assert_allclose(evidence, expected, atol=1e-4)
    # Genes within ~0.7 of zero vanish; large shifts are kept nearly whole.
    assert (np.abs(evidence[np.abs(shift) < 0.7]) < 1e-6).all()
    assert np.abs(evidence[np.abs(shift) > 2]).min() > 0.8 * np.abs(shift[np.abs(shift) > 2]).min()


def test_a_dropped_candidate_takes_its_share_with_it(spec: ModelSpec) -> None:
    model = _model(spec, "retrieval.shrinkage=0")
    full, weights, candidates = _evidence(model, 10, 0)
    k = candidates.index.shape[1]
    keep = torch.ones(1, 1, k)
    keep[0, 0, 0] = 0.0
    partial, kept_weights, _ = _evidence(model, 10, 0, keep)
    shifts = spec.memory.shifts[candidates.index[0].numpy()]
    # No renormalisation: the evidence loses exactly the dropped candidate's part.
    np.testing.assert_allclose(partial, full - weights[0] * shifts[0], atol=1e-5)
    assert kept_weights[0] == 0 and np.allclose(kept_weights[1:], weights[1:])
    nothing, _, _ = _evidence(model, 10, 0, torch.zeros(1, 1, k))
    assert not nothing.any()


def test_the_sparsity_term_charges_nothing_for_the_querys_own_measurements(spec: ModelSpec, make_batch):
    module = PerturbationLightningModule(load_config(None, ["model.arm=memory", *SMALL]), spec)
    module.eval()
    batch = make_batch(n_sets=6)
    batch["pert_index"] = torch.tensor([1, 2, 3, 10, 11, 9])  # P1..P3 measured in the other type
    with torch.no_grad():
        output = module.model.on_batch(batch)
    share = output.evidence_share.numpy()
    same = output.candidates.same_perturbation.numpy()
    valid = output.candidates.valid.numpy()
    assert np.allclose(share[same & valid], 1.0)
    assert (share[~same & valid][: 3 * 5] < 0.05).all()  # neighbours of a measured query: nearly nothing
    assert 0 < float(output.charged_rate()) < float(output.selection_rate())


def test_same_perturbation_dropout_hides_own_measurements_in_training_only(spec: ModelSpec, make_batch):
    config = load_config(None, ["model.arm=memory", *SMALL, "retrieval.same_dropout=0.9"])
    model = build_model(config, spec)
    batch = make_batch(n_sets=40)
    batch["pert_index"] = torch.ones(40, dtype=torch.long)  # P1: measured in the other cell type
    torch.manual_seed(0)
    model.train()
    hidden = model.on_batch(batch).candidates
    model.eval()
    with torch.no_grad():
        shown = model.on_batch(batch).candidates
    assert (shown.valid & shown.same_perturbation).any(dim=1).all()
    visible = (hidden.valid & hidden.same_perturbation).any(dim=1).float().mean()
    assert 0.0 < float(visible) < 0.3  # about 10 % of sets keep it at a 0.9 dropout


def test_shuffled_candidates_are_random_rows_but_never_the_query_itself(spec: ModelSpec) -> None:
    nearest = _model(spec)
    shuffled = _model(spec, "retrieval.candidates=shuffled")
    again = _model(spec, "retrieval.candidates=shuffled")
    memory = spec.memory
    differs = 0
    for v, name in enumerate(spec.vocabulary):
        for c, cell_type in enumerate(spec.cell_types):
            rows = shuffled.retriever.memory_index[v, c][shuffled.retriever.memory_valid[v, c]].tolist()
            assert (name, cell_type) not in {(memory.perturbations[r], memory.cell_types[r]) for r in rows}
            assert rows == again.retriever.memory_index[v, c][again.retriever.memory_valid[v, c]].tolist()
            differs += rows != nearest.retriever.memory_index[v, c][: len(rows)].tolist()
    assert differs > len(spec.vocabulary)  # most queries get other candidates than the nearest


def test_anchoring_recentres_each_set_on_its_cell_types_control_pool(spec: ModelSpec, make_batch) -> None:
    batch = make_batch(n_sets=2, set_len=6)
    batch["control"] = batch["control"] + 5.0  # strictly positive: ReLU changes nothing
    batch["control_mean"] = torch.full((2, spec.genes.__len__()), 7.0)
    anchored = _model(spec, arm="st")
    plain = _model(spec, "model.anchor=none", arm="st")
    with torch.no_grad():
        moved = anchored.on_batch(batch).predicted
        kept = plain.on_batch(batch).predicted
    # At initialisation (zero response) the anchored set's mean is the pool mean, cells keep their spread.
    np.testing.assert_allclose(moved.mean(dim=1).numpy(), 7.0, atol=1e-5)
    np.testing.assert_allclose(kept.numpy(), batch["control"].numpy(), atol=1e-6)
    np.testing.assert_allclose(
        (moved - moved.mean(dim=1, keepdim=True)).numpy(),
        (kept - kept.mean(dim=1, keepdim=True)).numpy(),
        atol=1e-5,
    )


def test_at_prediction_the_kept_cells_of_a_padded_set_are_the_ones_recentred(spec, make_batch) -> None:
    batch = make_batch(n_sets=2, set_len=6)
    batch["control"] = batch["control"] + 5.0
    batch["control_mean"] = torch.full((2, len(spec.genes)), 7.0)
    batch["anchor_cells"] = torch.tensor([6, 4])  # the second set keeps 4 real cells, 2 pad it
    with torch.no_grad():
        predicted = _model(spec, arm="st").on_batch(batch).predicted
    np.testing.assert_allclose(predicted[0].mean(dim=0).numpy(), 7.0, atol=1e-5)
    np.testing.assert_allclose(predicted[1, :4].mean(dim=0).numpy(), 7.0, atol=1e-5)
    assert not np.allclose(predicted[1].mean(dim=0).numpy(), 7.0, atol=1e-3)


@pytest.mark.parametrize("replace", [False, True])
def test_memories_merge_and_refuse_silent_duplicates(spec: ModelSpec, replace: bool) -> None:
    memory = spec.memory
    extra = ResponseMemory(("P1", "P10"), ("a", "a"), np.ones((2, len(spec.genes)), np.float32))
    if not replace:
        with pytest.raises(ValueError, match="P1@a"):
            memory.merged(extra)
        return
    merged = memory.merged(extra, replace=True)
    assert len(merged) == len(memory) + 1
    row = {(p, c): i for i, (p, c) in enumerate(zip(merged.perturbations, merged.cell_types, strict=True))}
    np.testing.assert_array_equal(merged.shifts[row[("P1", "a")]], 1.0)
    np.testing.assert_array_equal(merged.shifts[row[("P2", "a")]], memory.shifts[2])
