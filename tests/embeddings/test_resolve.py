"""Symbol resolution: exact → case-insensitive → alias; missing genes are listed, never silently zero."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ptrag.embeddings import EmbeddingCoverageWarning, GeneEmbeddings, load_embeddings, resolve_genes
from ptrag.errors import EmbeddingError

ALIASES = pd.DataFrame(
    {
        "alias": ["AARS", "CTD-2210P24.4", "KIAA0101", "p53", "OLDX", "OLDX"],
        "symbol": ["AARS1", "AARS1", "PCLAF", "TP53", "GENEA", "GENEB"],
    }
)


@pytest.fixture
def embeddings() -> GeneEmbeddings:
    symbols = ("AARS1", "PCLAF", "TP53", "Rpl7", "GENEA", "GENEB", "MED12")
    matrix = np.arange(len(symbols) * 3, dtype=np.float32).reshape(len(symbols), 3) + 1
    return GeneEmbeddings(symbols, matrix, "toy")


def test_exact_case_and_alias_matches(embeddings: GeneEmbeddings) -> None:
    genes = ["TP53", "RPL7", "AARS", "kiaa0101", "p53"]
    result = resolve_genes(embeddings, genes, aliases=ALIASES)
    assert result.genes == tuple(genes)
    assert result.matched == {
        "TP53": "TP53",
        "RPL7": "Rpl7",
        "AARS": "AARS1",
        "kiaa0101": "PCLAF",
        "p53": "TP53",
    }
    assert result.how == {
        "TP53": "exact",
        "RPL7": "case-insensitive",
        "AARS": "alias",
        "kiaa0101": "alias",
        "p53": "alias",
    }
    np.testing.assert_array_equal(result.matrix[2], embeddings.vector("AARS1"))
    np.testing.assert_array_equal(result.matrix[4], embeddings.vector("TP53"))
    assert result.coverage == 1.0
    assert result.counts() == {"exact": 1, "case-insensitive": 1, "alias": 3, "missing": 0}


def test_old_names_in_the_embeddings_resolve_from_current_symbols() -> None:
    # GenePT predates renames: its table says AARS where a current dataset says AARS1.
    old = GeneEmbeddings(("AARS", "KIAA0101"), np.eye(2, 4, dtype=np.float32), "old")
    result = resolve_genes(old, ["AARS1", "PCLAF"], aliases=ALIASES)
    assert result.matched == {"AARS1": "AARS", "PCLAF": "KIAA0101"}


def test_ambiguous_alias_is_missing_not_guessed(embeddings: GeneEmbeddings) -> None:
    with pytest.raises(EmbeddingError, match="'OLDX'"):
        resolve_genes(embeddings, ["OLDX"], aliases=ALIASES)


def test_missing_genes_error_lists_them_and_truncates(embeddings: GeneEmbeddings) -> None:
    missing = [f"NOPE{i}" for i in range(30)]
    with pytest.raises(EmbeddingError) as info:
        resolve_genes(embeddings, ["TP53", *missing], aliases=ALIASES)
    message = str(info.value)
    assert "30 of 31 genes have no embedding in toy" in message
    assert "'NOPE0'" in message and "'NOPE19'" in message
    assert "'NOPE29'" not in message and "(10 more)" in message
    assert "'drop' or 'zero'" in message


def test_drop_policy_warns_and_drops(embeddings: GeneEmbeddings) -> None:
    with pytest.warns(EmbeddingCoverageWarning, match="1 gene.*dropped.*'NOPE'"):
        result = resolve_genes(embeddings, ["MED12", "NOPE", "TP53"], policy="drop", aliases=ALIASES)
    assert result.genes == ("MED12", "TP53")
    assert result.matrix.shape == (2, 3)
    np.testing.assert_array_equal(result.matrix[1], embeddings.vector("TP53"))
    assert result.missing == ("NOPE",)
    assert result.coverage == pytest.approx(2 / 3)
    assert "2 of 3 genes" in result.summary() and "'NOPE'" in result.summary()


def test_zero_policy_fills_zeros_with_a_warning(embeddings: GeneEmbeddings) -> None:
    with pytest.warns(EmbeddingCoverageWarning, match="zero vectors"):
        result = resolve_genes(embeddings, ["MED12", "NOPE"], policy="zero", aliases=ALIASES)
    assert result.genes == ("MED12", "NOPE")
    np.testing.assert_array_equal(result.matrix[1], np.zeros(3))
    assert np.abs(result.matrix[0]).sum() > 0


def test_unknown_policy_rejected(embeddings: GeneEmbeddings) -> None:
    with pytest.raises(EmbeddingError, match="Unknown missing-gene policy 'skip'"):
        resolve_genes(embeddings, ["TP53"], policy="skip")  # type: ignore[arg-type]


def test_default_aliases_resolve_renamed_genes_in_bundled_table() -> None:
    bundled = load_embeddings("bundled")
    # Old names of genes that are in the bundled table under their current HGNC symbols.
    result = resolve_genes(bundled, ["AARS", "KARS", "RPL7"])
    assert result.matched == {"AARS": "AARS1", "KARS": "KARS1", "RPL7": "RPL7"}
    assert result.how["AARS"] == "alias"
