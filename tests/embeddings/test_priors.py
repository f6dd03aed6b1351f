"""Gene priors: the GO graph prior, the co-expression prior, combining them, and the registry's errors."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd
import pytest

from ptrag.config import load_config, saved_config_from_dict
from ptrag.config.loading import config_to_dict
from ptrag.data.dataset import ColumnMapping, PerturbationDataset
from ptrag.data.expression import DenseExpression
from ptrag.embeddings import GeneEmbeddings
from ptrag.embeddings.bundled import load_all_genes
from ptrag.embeddings.priors import (
    PRIOR_NAMES,
    build_go_embeddings,
    check_sources,
    coexpression_embeddings,
    combine_priors,
    go_embeddings,
    load_prior_tables,
)
from ptrag.errors import ConfigError, EmbeddingError


def _cosine(table: GeneEmbeddings, a: str, b: str) -> float:
    u, v = table.vector(a), table.vector(b)
    return float(u @ v / np.linalg.norm(u) / np.linalg.norm(v))


def test_the_shipped_go_prior_puts_complex_members_together():
    table = go_embeddings()
    assert table.dim == 128 and table.matrix.dtype == np.float32
    # Every bundled gene with a GO term that another gene shares, and no other.
    genes = load_all_genes()
    counts = Counter(term for ids in genes["go_ids"] for term in set(ids))
    annotated = zip(genes["symbol"], genes["go_ids"], strict=True)
    shared = {symbol for symbol, ids in annotated if any(counts[term] > 1 for term in ids)}
    assert set(table.symbols) == shared and len(shared) == 18_779
    # Proteasome subunits share their GO terms; a ribosomal protein shares few of them.
    assert _cosine(table, "PSMA1", "PSMA2") > 0.8
    assert _cosine(table, "PSMA1", "RPL10") < 0.3
    neighbours = [gene for gene, _ in table.cosine_neighbors("PSMA1", 10)]
    assert sum(gene.startswith("PSM") for gene in neighbours) >= 8


def test_building_the_go_prior_weights_rare_shared_terms_and_leaves_out_unshared_genes():
    table = pd.DataFrame(
        {
            "symbol": ["A", "B", "C", "D", "E", "F"],
            "go_ids": [
                ["GO:1", "GO:2"], ["GO:1", "GO:2"], ["GO:2", "GO:3"], ["GO:3", "GO:4"], ["GO:4"], ["GO:9"]
            ],
        }
    )
    prior = build_go_embeddings(table)
    assert prior.symbols == ("A", "B", "C", "D", "E")  # F's only term is its own
    assert _cosine(prior, "A", "B") == pytest.approx(1.0, abs=1e-5)  # identical annotation
    # C shares GO:2 with A (held by 3 genes) and GO:3 with D (held by 2): the rarer term links more.
    assert _cosine(prior, "C", "D") > _cosine(prior, "C", "A") > _cosine(prior, "A", "E")


def _coexpression_screen(n_cells: int = 400) -> PerturbationDataset:
    """Controls where g0 and g1 follow one hidden factor, g2 is independent and g3 is constant."""
    rng = np.random.default_rng(0)
    factor = rng.normal(size=n_cells)
    expression = np.column_stack(
        [
            2.0 + factor + 0.3 * rng.normal(size=n_cells),
            1.0 + factor + 0.3 * rng.normal(size=n_cells),
            1.5 + rng.normal(size=n_cells),
            np.full(n_cells, 0.7),
            0.5 + rng.normal(size=n_cells),
        ]
    ).astype(np.float32)
    labels = ["non-targeting"] * (n_cells - 10) + ["P1"] * 10
    # The perturbed cells would break the g0–g1 link if they counted: the prior reads controls only.
    expression[-10:, 0] += 50.0
    obs = pd.DataFrame(
        {
            "perturbation": pd.Categorical(labels),
            "cell_type": pd.Categorical(["k562"] * n_cells),
            "batch": pd.Categorical(["0"] * n_cells),
        },
        index=[f"c{i}" for i in range(n_cells)],
    )
    return PerturbationDataset(
        DenseExpression(expression),
        ("g0", "g1", "g2", "g3", "g4"),
        obs,
        ColumnMapping("gene", "cell_line", None, "non-targeting"),
    )


def test_coexpression_prior_links_genes_that_vary_together_in_control_cells():
    table = coexpression_embeddings(_coexpression_screen())
    assert table.symbols == ("g0", "g1", "g2", "g4")  # the constant gene is not covered
    assert _cosine(table, "g0", "g1") > 0.9
    assert abs(_cosine(table, "g0", "g2")) < 0.5


def test_one_prior_keeps_its_vectors_and_several_average_their_cosines():
    text = GeneEmbeddings(("A", "B", "C"), np.array([[3.0, 0.0], [0.0, 2.0], [1.0, 1.0]]), "text")
    go = GeneEmbeddings(("A", "B"), np.array([[1.0, 0.0, 0.0], [0.6, 0.8, 0.0]]), "go")
    alone = combine_priors(["A", "C"], {"text": text})
    np.testing.assert_array_equal(alone.matrix, [[3.0, 0.0], [1.0, 1.0]])  # single-prior runs unchanged
    both = combine_priors(["A", "B", "C"], {"text": text, "go": go}, policy="zero")
    assert both.matrix.shape == (3, 5) and both.source == "text+go"
    a, b, c = both.matrix
    # Fully covered pair: the mean of the per-prior cosines (0 for text, 0.6 for go).
    assert a @ b == pytest.approx((0.0 + 0.6) / 2, abs=1e-6)
    np.testing.assert_array_equal(c[2:], 0.0)  # C has no GO vector: that block is zeros
    assert list(both.covered["go"]) == [True, True, False]
    assert "go 2/3" in both.coverage_line()


def test_a_gene_no_prior_covers_follows_the_missing_policy():
    text = GeneEmbeddings(("A",), np.ones((1, 2)), "text")
    go = GeneEmbeddings(("B",), np.ones((1, 3)), "go")
    with pytest.raises(EmbeddingError, match="'Z'"):
        combine_priors(["A", "B", "Z"], {"text": text, "go": go})
    with pytest.warns(UserWarning, match="dropped"):
        dropped = combine_priors(["A", "B", "Z"], {"text": text, "go": go}, policy="drop")
    assert dropped.genes == ("A", "B")


def test_quiet_combining_drops_silently_and_keeps_the_same_vectors(recwarn, caplog):
    text = GeneEmbeddings(("A", "B"), np.array([[3.0, 0.0], [0.0, 2.0]]), "text")
    go = GeneEmbeddings(("B",), np.ones((1, 3)), "go")
    for tables in ({"text": text}, {"text": text, "go": go}):
        with pytest.warns(UserWarning):
            loud = combine_priors(["A", "B", "Z"], tables, policy="drop")
        recwarn.clear()
        caplog.clear()
        quiet = combine_priors(["A", "B", "Z"], tables, policy="drop", quiet=True)
        assert not recwarn.list and not caplog.records
        assert quiet.genes == loud.genes == ("A", "B")
        np.testing.assert_array_equal(quiet.matrix, loud.matrix)
    with pytest.raises(ValueError, match="policy 'drop' only"):
        combine_priors(["A"], {"text": text}, policy="zero", quiet=True)


def test_sources_are_checked_parsed_and_old_runs_keep_the_text_prior():
    assert check_sources(["go", "text"]) == ("go", "text")
    for bad, message in ((["text", "gox"], "'gox'"), ([], "empty"), (["go", "go"], "twice")):
        with pytest.raises(EmbeddingError, match=message):
            check_sources(bad)
    assert load_config(None, ["embedding.sources=text,coexpression"]).embedding.sources == (
        "text",
        "coexpression",
    )
    with pytest.raises(ConfigError, match="known: 'text', 'go', 'coexpression'"):
        load_config(None, ["embedding.sources=text,gox"])
    saved = config_to_dict(load_config())
    assert saved["embedding"]["sources"] == ["text", "go"]
    del saved["embedding"]["sources"]
    assert saved_config_from_dict(saved).embedding.sources == ("text",)
    assert set(PRIOR_NAMES) == {"text", "go", "coexpression"}


def test_a_data_prior_a_run_does_not_hold_is_named():
    with pytest.raises(EmbeddingError, match="coexpression prior is built from the training data"):
        load_prior_tables(["text", "coexpression"], "bundled", {})


def test_the_go_prior_is_read_from_the_package_never_rebuilt(monkeypatch):
    # Rebuilding depends on the BLAS and its threads; a screen must embed new genes exactly as its
    # run embedded the training genes, so prediction only ever reads the shipped vectors.
    import ptrag.embeddings.priors as priors

    def refuse(*_: object) -> None:
        raise AssertionError("the GO prior was rebuilt at run time")

    monkeypatch.setattr(priors, "build_go_embeddings", refuse)
    go_embeddings.cache_clear()
    try:
        assert go_embeddings().matrix.shape == (18_779, 128)
    finally:
        go_embeddings.cache_clear()
