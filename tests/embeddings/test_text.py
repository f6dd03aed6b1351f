"""The gene text template: specific terms first, capped per ontology, deterministic."""

from __future__ import annotations

from ptrag.embeddings.text import MAX_TERMS, TEXT_TEMPLATE_VERSION, gene_text, ordered_terms


def test_terms_ordered_by_specificity_and_capped() -> None:
    ids = [f"GO:{i:07d}" for i in range(20)]
    names = {go: f"process {i}" for i, go in enumerate(ids)}
    ontology = {go: "BP" for go in ids} | {"GO:9999999": "MF"}
    names["GO:9999999"] = "binding thing"
    counts = {go: 100 - i for i, go in enumerate(ids)} | {"GO:9999999": 5}
    terms = ordered_terms([*ids, "GO:9999999", "GO:unknown"], names, ontology, counts)
    assert len(terms["BP"]) == MAX_TERMS["BP"]
    # The least-annotated (most specific) terms survive: process 19 has 81 genes, process 0 has 100.
    assert terms["BP"][:3] == ["process 19", "process 18", "process 17"]
    assert "process 0" not in terms["BP"]
    assert terms["MF"] == ["binding thing"]
    assert terms["CC"] == []
    assert terms == ordered_terms(list(reversed([*ids, "GO:9999999"])), names, ontology, counts)


def test_gene_text_layout() -> None:
    text = gene_text(
        "RPL7",
        "ribosomal protein L7",
        {
            "BP": ["cytoplasmic translation"],
            "MF": [],
            "CC": ["cytosolic large ribosomal subunit", "nucleolus"],
        },
    )
    assert text == (
        "Gene RPL7. Ribosomal protein L7. Biological process: cytoplasmic translation. "
        "Cellular component: cytosolic large ribosomal subunit; nucleolus."
    )
    assert TEXT_TEMPLATE_VERSION == "v1"
