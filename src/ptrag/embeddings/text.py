"""The GenePT-style text written for each gene before it is embedded.

GenePT embeds each gene's NCBI summary. Offline we have no summaries, so each gene is described by
its symbol, its full name and the names of its GO terms:

    Gene RPL7. Ribosomal protein L7. Biological process: cytoplasmic translation; ...
    Molecular function: structural constituent of ribosome; ... Cellular component: ...

all-MiniLM-L6-v2 reads at most 256 word pieces, so long GO lists are capped deterministically: within
each ontology the terms annotated to the fewest protein-coding genes (the most specific ones) come
first, ties broken by name, and at most ``MAX_TERMS`` per ontology are kept. Broad terms ("protein
binding", "cytosol") carry little about the gene and are the first to go.

The template is versioned; every embedding file stores ``TEXT_TEMPLATE_VERSION`` so that embeddings
built from different texts are never mixed unknowingly.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

__all__ = ["TEXT_TEMPLATE_VERSION", "texts_for_table"]

TEXT_TEMPLATE_VERSION = "v1"
MAX_TERMS: Mapping[str, int] = {"BP": 10, "MF": 6, "CC": 6}
SECTION_TITLES: Mapping[str, str] = {
    "BP": "Biological process",
    "MF": "Molecular function",
    "CC": "Cellular component",
}


def _sentence_case(text: str) -> str:
    return text[:1].upper() + text[1:] if text else text


def ordered_terms(
    go_ids: Iterable[str],
    term_names: Mapping[str, str],
    term_ontology: Mapping[str, str],
    term_gene_counts: Mapping[str, int],
) -> dict[str, list[str]]:
    """Term names per ontology, most specific first, capped at ``MAX_TERMS``."""
    by_ontology: dict[str, list[tuple[int, str]]] = {key: [] for key in SECTION_TITLES}
    for go_id in set(go_ids):
        ontology = term_ontology.get(go_id)
        if ontology not in by_ontology:
            continue
        by_ontology[ontology].append((term_gene_counts.get(go_id, 0), term_names[go_id]))
    result: dict[str, list[str]] = {}
    for ontology, entries in by_ontology.items():
        names: list[str] = []
        for _, name in sorted(entries):
            if name not in names:
                names.append(name)
        result[ontology] = names[: MAX_TERMS[ontology]]
    return result


def gene_text(symbol: str, full_name: str, terms: Mapping[str, list[str]]) -> str:
    """Render one gene's text with template ``TEXT_TEMPLATE_VERSION``."""
    parts = [f"Gene {symbol}."]
    if full_name:
        parts.append(f"{_sentence_case(full_name.strip().rstrip('.'))}.")
    for ontology, title in SECTION_TITLES.items():
        names = terms.get(ontology, [])
        if names:
            parts.append(f"{title}: {'; '.join(names)}.")
    return " ".join(parts)


def texts_for_table(genes: Iterable[tuple[str, str, list[str]]], go_terms: object) -> list[str]:
    """Texts for ``(symbol, full_name, go_ids)`` rows given a GO-term table.

    ``go_terms`` is a DataFrame with ``go_id``, ``name``, ``ontology``, ``n_genes``.
    """
    names = dict(zip(go_terms["go_id"], go_terms["name"], strict=True))  # type: ignore[index]
    ontology = dict(zip(go_terms["go_id"], go_terms["ontology"], strict=True))  # type: ignore[index]
    counts = dict(zip(go_terms["go_id"], go_terms["n_genes"], strict=True))  # type: ignore[index]
    return [
        gene_text(symbol, full_name, ordered_terms(go_ids, names, ontology, counts))
        for symbol, full_name, go_ids in genes
    ]
