"""The bundled gene table, GO terms, aliases and embeddings: the contract other packages rely on."""

from __future__ import annotations

import re

import numpy as np
import pytest

from ptrag.embeddings.bundled import (
    load_all_genes,
    load_bundled_aliases,
    load_bundled_embeddings,
    load_gene_table,
    load_go_terms,
    load_provenance,
    resource_path,
)
from ptrag.embeddings.families import CATEGORY_ORDER, family_of
from ptrag.embeddings.text import TEXT_TEMPLATE_VERSION


def test_gene_table_contract() -> None:
    table = load_gene_table()
    assert list(table.columns) == ["symbol", "entrez_id", "full_name", "go_ids", "category"]
    assert 4500 <= len(table) <= 5500
    assert table["symbol"].is_unique
    assert table["entrez_id"].str.fullmatch(r"\d+").all()
    assert (table["full_name"].str.len() > 0).all()
    assert all(isinstance(ids, list) and ids for ids in table["go_ids"])
    assert set(table["category"]) <= set(CATEGORY_ORDER)
    counts = table["category"].value_counts()
    assert counts["ribosome"] >= 70 and counts["proteasome"] >= 30 and counts["respiratory_chain"] >= 70
    assert counts["other"] >= 300 and counts["background"] >= 2000
    # Fixed order: by category, then symbol; a fresh copy each call.
    rank = table["category"].map({c: i for i, c in enumerate(CATEGORY_ORDER)})
    assert rank.is_monotonic_increasing
    table.loc[0, "symbol"] = "CHANGED"
    assert load_gene_table().loc[0, "symbol"] != "CHANGED"


def test_family_members_match_their_patterns() -> None:
    table = load_gene_table()
    families = table[~table["category"].isin(["other", "background"])]
    assert (families["symbol"].map(family_of) == families["category"]).all()
    assert table[table["category"].isin(["other", "background"])]["symbol"].map(family_of).isna().all()
    assert {"RPL7", "NDUFS3", "POLR2G", "MED12", "PSMA1", "SF3B1", "AARS1", "EIF3A"} <= set(
        families["symbol"]
    )


def test_every_protein_coding_gene_is_in_the_table() -> None:
    genes, simulator = load_all_genes(), load_gene_table()
    assert list(genes.columns) == list(simulator.columns)
    assert 19_000 <= len(genes) <= 21_000 and genes["symbol"].is_unique
    assert {"TP53", "MYC", "GAPDH", "BRCA1", "EGFR", "RPL7"} <= set(genes["symbol"])
    # The simulator's genes come first, unchanged; the rest follow by symbol with no category.
    head = genes.iloc[: len(simulator)].reset_index(drop=True)
    assert head.drop(columns="go_ids").equals(simulator.drop(columns="go_ids"))
    rest = genes.iloc[len(simulator) :]
    assert rest["category"].isna().all() and rest["symbol"].is_monotonic_increasing
    assert (genes["go_ids"].map(len) > 0).mean() > 0.9  # a few genes have no GO annotation yet


def test_go_terms_cover_every_referenced_id() -> None:
    table, terms = load_all_genes(), load_go_terms()
    referenced = {go for ids in table["go_ids"] for go in ids}
    assert referenced == set(terms["go_id"])
    assert set(terms["ontology"]) == {"BP", "MF", "CC"}
    assert terms["go_id"].is_unique and (terms["n_genes"] >= 1).all()
    cytoplasmic_translation = terms.set_index("go_id").loc["GO:0002181"]
    assert cytoplasmic_translation["name"] == "cytoplasmic translation"
    rpl7 = table.set_index("symbol").loc["RPL7"]
    assert "GO:0002181" in rpl7["go_ids"]


def test_embeddings_align_with_table_and_are_unit_norm() -> None:
    embeddings, table = load_bundled_embeddings(), load_all_genes()
    assert embeddings.symbols == tuple(table["symbol"])
    assert embeddings.matrix.shape == (len(table), 384)
    assert embeddings.matrix.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(embeddings.matrix, axis=1), 1.0, atol=1e-5)
    assert embeddings.text_template == TEXT_TEMPLATE_VERSION
    with np.load(resource_path("gene_embeddings.npz")) as stored:
        assert stored["matrix"].dtype == np.float16


def test_aliases_and_provenance() -> None:
    aliases = load_bundled_aliases()
    assert list(aliases.columns) == ["alias", "symbol"]
    assert len(aliases) > 40_000
    assert "AARS1" in set(aliases.loc[aliases["alias"] == "AARS", "symbol"])
    provenance = load_provenance()
    assert provenance["text_template"] == TEXT_TEMPLATE_VERSION
    assert provenance["genes"] == len(load_all_genes())
    assert provenance["simulator_genes"] == len(load_gene_table())


def test_resources_stay_small() -> None:
    directory = resource_path("gene_table.parquet").parent
    total = sum(path.stat().st_size for path in directory.iterdir() if path.is_file())
    # 16.5 MB of gene table, aliases and text embeddings, plus 8.5 MB of GO prior (float32, shipped
    # so that every machine embeds a gene alike; docs/priors.md).
    assert total < 26 * 1024 * 1024


@pytest.mark.parametrize(
    ("query", "family"),
    [("RPL7", r"RP[LS]\d"), ("NDUFS3", r"NDUF"), ("POLR2G", r"POLR"), ("MED12", r"MED"), ("PSMA3", r"PSM")],
)
def test_neighbours_are_in_the_expected_family(query: str, family: str) -> None:
    neighbours = load_bundled_embeddings().cosine_neighbors(query, k=10)
    in_family = [name for name, _ in neighbours if re.match(family, name)]
    print(f"{query}: {len(in_family)}/10 in family: {neighbours}")
    assert len(in_family) == 10
    assert all(0.0 < cosine < 1.0 for _, cosine in neighbours)
