import numpy as np
import pytest

from ptrag.errors import PtragError
from ptrag.retrieval import RetrievalDatabase


def _database(n: int = 30, d: int = 16, seed: int = 0) -> tuple[RetrievalDatabase, np.ndarray]:
    rng = np.random.default_rng(seed)
    embeddings = rng.normal(size=(n, d)).astype(np.float32)
    return RetrievalDatabase.build([f"P{i}" for i in range(n)], embeddings), embeddings


def test_query_never_retrieves_itself_and_neighbours_are_the_true_top_k() -> None:
    database, embeddings = _database()
    names = list(database.perturbations)
    found = database.neighbours(names, embeddings, k=5)
    unit = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    cosine = unit @ unit.T
    for q in range(len(names)):
        assert q not in found.index[q]
        expected = [j for j in np.argsort(-cosine[q]) if j != q][:5]
        assert list(found.index[q]) == expected
        np.testing.assert_allclose(found.cosine[q], cosine[q, expected], rtol=1e-5)
    assert found.valid.all()


def test_query_outside_the_database_may_retrieve_any_row() -> None:
    database, embeddings = _database()
    # A held-out perturbation whose embedding equals P3's: P3 is its top neighbour.
    found = database.neighbours(["HELDOUT"], embeddings[[3]], k=3)
    assert found.index[0, 0] == 3
    assert found.cosine[0, 0] == pytest.approx(1.0, abs=1e-5)


def test_fewer_rows_than_k_are_padded_as_invalid() -> None:
    database, embeddings = _database(n=4)
    found = database.neighbours(["P0"], embeddings[[0]], k=6)
    assert found.valid[0].tolist() == [True, True, True, False, False, False]
    assert 0 not in found.index[0, :3]


def test_duplicate_perturbations_are_rejected() -> None:
    with pytest.raises(PtragError, match="unique"):
        RetrievalDatabase.build(["A", "A"], np.ones((2, 3), np.float32))


def test_top_k_ranks_highest_first_ties_by_position_and_masked_rows_last() -> None:
    import numpy as np

    from ptrag.retrieval.database import top_k

    scores = np.array([[0.2, 0.9, 0.2, -np.inf, 0.9], [0.0, 0.0, 0.0, 0.0, 0.0]])
    np.testing.assert_array_equal(top_k(scores, 4), [[1, 4, 0, 2], [0, 1, 2, 3]])
    np.testing.assert_array_equal(top_k(scores, 9)[0], [1, 4, 0, 2, 3])  # -inf (a query's own row) last
    assert top_k(scores, 0).shape == (2, 0)
