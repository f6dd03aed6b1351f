"""Shift references on hand-built screens: closed-form values, fallbacks, no held-out cell, ridge CV."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ptrag.data.dataset import ColumnMapping, PerturbationDataset
from ptrag.data.expression import DenseExpression
from ptrag.errors import DataError
from ptrag.evaluation import REFERENCE_FILE, ReferenceShifts, compute_reference_shifts
from ptrag.evaluation.ridge import fit_ridge_loo
from ptrag.evaluation.shifts import ShiftInputs, knn_shifts, knn_weights, train_mean_by_cell_type
from ptrag.retrieval import ResponseMemory

CONTROL = "non-targeting"
CONTROL_MEAN = {
    "a": np.array([1.0, 2.0, 0.0]),
    "b": np.array([0.0, 1.0, 1.0]),
    "c": np.array([2.0, 2.0, 2.0]),
}
# (cell type, perturbation) → (role, true shift). The held-out groups carry huge shifts: if any of
# their cells entered a reference, every expected value below would be off by hundreds.
GROUPS = {
    ("a", "P1"): ("train", [1.0, 0.0, -1.0]),
    ("b", "P1"): ("train", [3.0, 2.0, 1.0]),
    ("a", "P2"): ("train", [0.0, 4.0, 0.0]),
    ("c", "P2"): ("train", [2.0, 2.0, 0.0]),
    ("c", "P3"): ("train", [0.0, 0.0, 6.0]),
    ("c", "P1"): ("test", [500.0, 500.0, 500.0]),
    ("c", "P9"): ("test", [700.0, 0.0, 0.0]),
    ("b", "P2"): ("val", [900.0, 900.0, 900.0]),
}


def _screen() -> tuple[PerturbationDataset, np.ndarray]:
    """Two cells per group at mean ± e, so every group mean is exact; returns (dataset, train mask)."""
    rows, labels, roles = [], [], []
    for cell_type, mean in CONTROL_MEAN.items():
        for sign in (1, -1):
            rows.append(mean + sign * 0.5)
            labels.append((cell_type, CONTROL))
            roles.append("control")
    for (cell_type, perturbation), (role, shift) in GROUPS.items():
        for sign in (1, -1):
            rows.append(CONTROL_MEAN[cell_type] + np.array(shift) + sign * np.array([0.25, -0.25, 0.1]))
            labels.append((cell_type, perturbation))
            roles.append(role)
    obs = pd.DataFrame(
        {
            "perturbation": pd.Categorical([p for _, p in labels]),
            "cell_type": pd.Categorical([c for c, _ in labels]),
            "batch": pd.Categorical(["0"] * len(labels)),
        },
        index=[f"cell{i}" for i in range(len(labels))],
    )
    dataset = PerturbationDataset(
        DenseExpression(np.array(rows, dtype=np.float32)),
        ("g0", "g1", "g2"),
        obs,
        ColumnMapping("gene", "cell_line", None, CONTROL),
    )
    return dataset, np.array(roles) == "train"


def _shift(cell_type: str, perturbation: str) -> np.ndarray:
    return np.array(GROUPS[(cell_type, perturbation)][1])


@pytest.fixture
def shifts() -> ReferenceShifts:
    dataset, train = _screen()
    embeddings = {"P1": np.array([1.0, 0.0]), "P2": np.array([1.0, 1.0]), "P3": np.array([-1.0, 0.2])}
    return compute_reference_shifts(dataset, train, [("c", "P1"), ("c", "P9")], embeddings)


def _value(shifts: ReferenceShifts, name: str, condition: tuple[str, str]) -> np.ndarray:
    return shifts.lookup(name)(*condition)


def test_train_mean_is_the_cell_types_mean_training_shift(shifts):
    expected = (_shift("c", "P2") + _shift("c", "P3")) / 2  # (c, P1) is test: not in it
    np.testing.assert_allclose(_value(shifts, "train_mean", ("c", "P1")), expected, atol=1e-6)
    np.testing.assert_allclose(_value(shifts, "train_mean", ("c", "P9")), expected, atol=1e-6)


def test_perturb_shift_is_the_mean_of_the_other_lines_training_shifts(shifts):
    expected = (_shift("a", "P1") + _shift("b", "P1")) / 2  # = (2, 1, 0)
    np.testing.assert_allclose(_value(shifts, "perturb_shift", ("c", "P1")), expected, atol=1e-6)
    # P9 is measured nowhere else: train_mean's shift, and the details say so.
    np.testing.assert_allclose(
        _value(shifts, "perturb_shift", ("c", "P9")), _value(shifts, "train_mean", ("c", "P9")), atol=1e-7
    )
    details = shifts.details.set_index(["reference", "perturbation"])
    assert details.loc[("perturb_shift", "P1"), "source"] == "other_cell_types"
    assert details.loc[("perturb_shift", "P1"), "detail"] == "a;b"
    assert details.loc[("perturb_shift", "P9"), "source"] == "train_mean"


def test_knn_shift_weights_positive_cosines_and_falls_back_without_an_embedding(shifts):
    # Query P1 = (1, 0) in c: neighbours P2 (cos 1/√2) and P3 (cos −0.98, weight 0).
    np.testing.assert_allclose(_value(shifts, "knn_shift", ("c", "P1")), _shift("c", "P2"), atol=1e-6)
    # P9 has no embedding: train_mean.
    np.testing.assert_allclose(
        _value(shifts, "knn_shift", ("c", "P9")), _value(shifts, "train_mean", ("c", "P9")), atol=1e-7
    )
    detail = shifts.details.set_index(["reference", "perturbation"]).loc[("knn_shift", "P9"), "detail"]
    assert "no embedding for the query" in detail


def test_knn_weights_closed_form():
    embeddings = {
        "A": np.array([2.0, 0.0]),  # cos 1
        "B": np.array([1.0, 1.0]),  # cos 1/√2
        "C": np.array([0.0, 3.0]),  # cos 0: no weight
        "D": np.array([-1.0, 0.0]),  # cos −1: no weight
        "Z": np.zeros(2),  # no direction: skipped
    }
    query = np.array([1.0, 0.0])
    weights = knn_weights(query, ["D", "C", "B", "A", "Z"], embeddings)
    root = 1 / np.sqrt(2)
    assert [name for name, _, _ in weights] == ["A", "B"]
    np.testing.assert_allclose([w for _, _, w in weights], [1 / (1 + root), root / (1 + root)])
    assert [name for name, _, _ in knn_weights(query, ["B", "A"], embeddings, k=1)] == ["A"]
    assert knn_weights(query, ["C", "D"], embeddings) == []  # no positive cosine
    assert knn_weights(np.zeros(2), ["A"], embeddings) == []


def test_knn_never_uses_the_query_itself_even_when_it_is_a_training_row():
    memory = ResponseMemory(("Q", "N1", "N2"), ("c", "c", "c"), np.array([[100.0], [1.0], [3.0]], np.float32))
    means, sources = train_mean_by_cell_type(memory, ["c"])
    embeddings = {"Q": np.array([1.0, 0.0]), "N1": np.array([1.0, 0.0]), "N2": np.array([1.0, 1.0])}
    inputs = ShiftInputs(memory, (("c", "Q"),), embeddings, means, sources)
    values, details = knn_shifts(inputs)
    root = 1 / np.sqrt(2)
    assert values[0, 0] == pytest.approx((1.0 * 1 + 3.0 * root) / (1 + root), rel=1e-6)
    assert "Q:" not in details[0]["detail"]


def test_a_zero_shot_cell_type_falls_back_to_the_mean_of_every_training_group():
    dataset, train = _screen()
    outside_c = train & (dataset.obs["cell_type"] != "c").to_numpy()
    unseen = compute_reference_shifts(dataset, outside_c, [("c", "P1")], {}, names=["train_mean", "linear"])
    pooled = np.mean([_shift("a", "P1"), _shift("b", "P1"), _shift("a", "P2")], axis=0)
    np.testing.assert_allclose(unseen.lookup("train_mean")("c", "P1"), pooled, atol=1e-6)
    np.testing.assert_allclose(unseen.lookup("linear")("c", "P1"), pooled, atol=1e-6)  # < 5 groups
    assert "mean of all 3 training groups" in unseen.details["detail"].iloc[0]


def test_linear_falls_back_with_too_few_groups(shifts):
    # Cell type c has 2 training groups (< 5): the linear reference is train_mean, and says why.
    np.testing.assert_allclose(
        _value(shifts, "linear", ("c", "P1")), _value(shifts, "train_mean", ("c", "P1")), atol=1e-7
    )
    detail = shifts.details.set_index(["reference", "perturbation"]).loc[("linear", "P1"), "detail"]
    assert "2 training groups with an embedding (< 5)" in detail


def test_ridge_loo_matches_brute_force_refits():
    from sklearn.linear_model import Ridge

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(12, 5)), rng.normal(size=(12, 3))
    fit = fit_ridge_loo(x, y, relative_grid=(0.05,))
    errors = []
    for i in range(12):
        keep = np.arange(12) != i
        model = Ridge(alpha=fit.lam, fit_intercept=True).fit(x[keep], y[keep])
        errors.append((model.predict(x[[i]])[0] - y[i]) ** 2)
    assert fit.loo_mse == pytest.approx(float(np.mean(errors)), rel=1e-10)
    full = Ridge(alpha=fit.lam, fit_intercept=True).fit(x, y)
    np.testing.assert_allclose(fit.predict(x[:2]), full.predict(x[:2]), atol=1e-10)


def test_ridge_recovers_a_linear_map_and_cv_prefers_the_mean_for_noise():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(60, 4))
    weights = rng.normal(size=(4, 6))
    y = 0.3 + x @ weights + rng.normal(0, 0.01, size=(60, 6))
    fit = fit_ridge_loo(x, y)
    assert fit.relative_lam <= 1e-3  # almost no shrinkage is best
    query = rng.normal(size=(1, 4))
    np.testing.assert_allclose(fit.predict(query), 0.3 + query @ weights, atol=0.02)
    assert fit.loo_mse < 0.01 * fit.loo_mse_mean_only

    outputs = rng.normal(size=(60, 6))
    noise = fit_ridge_loo(x, outputs)
    assert noise.relative_lam >= 1.0  # heavy shrinkage or the intercept-only model
    least_squares = np.linalg.lstsq(np.c_[np.ones(60), x], outputs, rcond=None)[0][1:]
    assert np.abs(noise.coef).max() < 0.5 * np.abs(least_squares).max()
    assert noise.loo_mse <= noise.loo_mse_mean_only


def test_linear_reference_uses_the_ridge_fit_of_the_cell_type():
    rng = np.random.default_rng(2)
    names = [f"T{i}" for i in range(12)]
    embeddings = {n: rng.normal(size=3) for n in [*names, "Q"]}
    truth = rng.normal(size=(3, 4))
    memory = ResponseMemory(
        tuple(names), ("c",) * 12, np.stack([embeddings[n] @ truth for n in names]).astype(np.float32)
    )
    from ptrag.evaluation.shifts import linear_shifts

    means, sources = train_mean_by_cell_type(memory, ["c"])
    values, details = linear_shifts(ShiftInputs(memory, (("c", "Q"),), embeddings, means, sources))
    np.testing.assert_allclose(values[0], embeddings["Q"] @ truth, atol=1e-3)
    assert details[0]["source"] == "ridge" and "n=12" in details[0]["detail"]


def test_save_load_round_trip_and_mismatch_errors(tmp_path, shifts):
    path = shifts.save(tmp_path / REFERENCE_FILE)
    loaded = ReferenceShifts.load(path)
    assert loaded.conditions == shifts.conditions and loaded.genes == shifts.genes
    for name, matrix in shifts.shifts.items():
        np.testing.assert_array_equal(loaded.shifts[name], matrix)
    pd.testing.assert_frame_equal(loaded.details, shifts.details)
    assert loaded.info["n_training_groups"] == 5
    with pytest.raises(DataError, match="no shift for 'P7'"):
        loaded.lookup("linear")("c", "P7")
    (tmp_path / "bad.npz").write_bytes(b"not a file")
    with pytest.raises(DataError, match="Re-run ptrag predict"):
        ReferenceShifts.load(tmp_path / "bad.npz")


def test_evidence_only_is_the_memory_arms_start_own_shift_shrunk_else_nearest_neighbours():
    from ptrag.config.schema import RetrievalConfig
    from ptrag.evaluation.shifts import training_memory

    dataset, train = _screen()
    embeddings = {
        "P1": np.array([1.0, 0.0]),
        "P2": np.array([1.0, 1.0]),
        "P3": np.array([-1.0, 0.2]),
        "P9": np.array([1.0, 0.5]),
    }
    retrieval = RetrievalConfig(top_k=4, same_prior=6.0, sharpness=4.0, shrinkage=4.0)
    shifts = compute_reference_shifts(
        dataset, train, [("c", "P1"), ("c", "P9")], embeddings, names=["evidence_only"], retrieval=retrieval
    )
    # P9 was never measured: its neighbours in c are P2 (cosine 0.95) and P3 (negative cosine, so
    # weight 1e-3^4 / 0.95^4 ≈ 1e-12): the evidence is c's P2 shift, not shrunk.
    np.testing.assert_allclose(_value(shifts, "evidence_only", ("c", "P9")), _shift("c", "P2"), atol=1e-5)
    # P1 measured in a and b: softmax weights e^6 for each own row, cos(P1, P2)^4 = 0.25 and
    # 1e-3^4 for c's neighbours; the own part is James-Stein-shrunk gene by gene against its noise.
    memory = training_memory(dataset, train)
    row = {(p, c): i for i, (p, c) in enumerate(zip(memory.perturbations, memory.cell_types, strict=True))}
    logits = np.array([6.0, 6.0, 4 * np.log(np.sqrt(0.5)), 4 * np.log(1e-3)])
    weights = np.exp(logits) / np.exp(logits).sum()
    own = [row[("P1", "a")], row[("P1", "b")]]
    mean = weights[:2] @ memory.shifts[own]
    variance = (weights[:2] ** 2) @ memory.noise[own]
    factor = np.clip(1 - 4.0 * variance / mean**2, 0, None)
    expected = factor * mean + weights[2] * _shift("c", "P2")
    np.testing.assert_allclose(_value(shifts, "evidence_only", ("c", "P1")), expected, rtol=1e-4, atol=1e-5)
    assert factor[2] == 0.0 and 0.8 < factor[0] < 1.0  # gene 2's own shift (0 ± noise) is removed
    assert shifts.details["source"].tolist() == ["evidence", "evidence"]


def test_each_prior_has_its_own_linear_reference_and_linear_uses_all_of_them():
    rng = np.random.default_rng(4)
    names = [f"T{i}" for i in range(12)]
    informative = {n: rng.normal(size=3) for n in [*names, "Q"]}
    noise = {n: rng.normal(size=3) for n in [*names, "Q"]}
    truth = rng.normal(size=(3, 4))
    memory = ResponseMemory(
        tuple(names), ("c",) * 12, np.stack([informative[n] @ truth for n in names]).astype(np.float32)
    )
    from ptrag.evaluation.shifts import ALL_PRIORS, linear_shifts, prior_linear_shifts

    means, sources = train_mean_by_cell_type(memory, ["c"])
    per_prior = {"go": informative, "text": noise, ALL_PRIORS: informative}
    inputs = ShiftInputs(memory, (("c", "Q"),), noise, means, sources, prior_embeddings=per_prior)
    go, _ = prior_linear_shifts("go")(inputs)
    np.testing.assert_allclose(go[0], informative["Q"] @ truth, atol=1e-3)
    text, _ = prior_linear_shifts("text")(inputs)
    assert np.abs(text[0] - informative["Q"] @ truth).max() > 0.1  # the uninformative prior misses
    combined, details = linear_shifts(inputs)
    np.testing.assert_allclose(combined[0], go[0])
    assert details[0]["reference"] == "linear"
    # A prior nobody computed: train_mean, and the detail says why.
    absent, records = prior_linear_shifts("coexpression")(inputs)
    np.testing.assert_allclose(absent[0], means["c"])
    assert records[0]["reference"] == "linear_coexpression" and "not given" in records[0]["detail"]
