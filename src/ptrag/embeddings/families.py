"""Which genes the bundled table holds, and why: complexes and processes, "other" and background.

The bundled benchmark perturbs genes the way CRISPRi screens of essential genes do: many targets
belong to a few large essential complexes (whose knock-downs give correlated responses) and many do
not. Selection is by HGNC symbol pattern, every pattern listed below, restricted to protein-coding
genes with at least one GO annotation; a gene gets the first family whose pattern it matches.

- "other": genes outside every family that are directly annotated to one of the core essential
  processes in ``ESSENTIAL_PROCESS_GO_IDS`` (direct annotations, not GO.db's propagated offspring,
  to keep the pool precise) and have at least ``MIN_OTHER_GO_TERMS`` GO terms; a seeded sample of
  ``N_OTHER`` of them.
- "background": a seeded sample of the remaining GO-annotated protein-coding genes, up to
  ``TARGET_SIZE`` genes in all.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import numpy as np
import pandas as pd

__all__ = ["SELECTION_SEED", "select_bundled_genes"]

# Family → regular expressions matched against the whole HGNC symbol.
FAMILY_PATTERNS: Mapping[str, tuple[str, ...]] = {
    "ribosome": (r"RP[LS]\d+[A-Z]?\d*", r"RPLP[0-2]", r"RPSA"),
    "mito_ribosome": (r"MRP[LS]\d+[A-Z]?",),
    "proteasome": (r"PSM[A-G]\d+",),
    "mediator": (r"MED\d+[A-Z]?",),
    "rna_polymerase": (r"POLR[123][A-Z]+\d?", r"POLRMT"),
    "respiratory_chain": (
        r"NDUF[ABCSV]\d+[A-Z]?\d?",
        r"NDUFAB1",
        r"SDH[ABCD]",
        r"UQCR[A-Z0-9]*",
        r"COX\d+[A-C]?\d?",
        r"CYC1",
        r"ATP5[A-Z0-9]+",
    ),
    "spliceosome": (
        r"SF3[AB]\d+",
        r"SNRP[A-G]\d*[A-Z]?\d*",
        r"SNRNP\d+",
        r"PRPF\d+[AB]?",
        r"LSM\d+",
        r"U2AF\d+",
    ),
    "trna_synthetase": (r"[A-Z]ARS1", r"EPRS1", r"FARS[AB]"),
    "translation_initiation": (r"EIF[1-6][A-Z0-9]*",),
    "chaperonin": (r"CCT\d[AB]?", r"TCP1"),
    "exosome": (r"EXOSC\d+", r"DIS3"),
    "replication": (
        r"MCM[2-7]",
        r"ORC\d",
        r"GINS\d",
        r"CDC45",
        r"RFC\d",
        r"PCNA",
        r"PRIM[12]",
        r"RPA[1-3]",
        r"POLA[12]",
        r"POLD[1-4]",
        r"POLE\d?",
    ),
    "cohesin_condensin": (r"SMC[1-6][AB]?", r"NCAP[DGH]\d?", r"RAD21", r"STAG[12]"),
    "nuclear_pore": (r"NUP\d+[A-Z]?", r"NUPL\d", r"SEH1L", r"TPR", r"AAAS", r"NDC1", r"POM121"),
    "tfiid": (r"TAF\d+[A-Z]?",),
    "integrator": (r"INTS\d+",),
    "ccr4_not": (r"CNOT\d+",),
    "apc_c": (r"ANAPC\d+", r"CDC16", r"CDC23", r"CDC26", r"CDC27"),
    "v_atpase": (r"ATP6V\d[A-Z]\d?",),
}
# Symbols that match a pattern but are not members (kinases that regulate initiation, for example).
FAMILY_EXCLUDE: Mapping[str, tuple[str, ...]] = {
    "translation_initiation": (r"EIF2AK\d", r"EIF4EBP\d", r"EIF4ENIF1"),
    "respiratory_chain": (r"NDUFAF\d+", r"COX\d+[A-C]?\d?L.*", r"ATP5MPL"),
    "mediator": (r"MED\d+L",),
    "tfiid": (r"TAF15",),
}

# Direct GO annotations that mark a gene as doing something a proliferating cell cannot do without.
ESSENTIAL_PROCESS_GO_IDS: tuple[str, ...] = (
    "GO:0006364",  # rRNA processing
    "GO:0000398",  # mRNA splicing, via spliceosome
    "GO:0006260",  # DNA replication
    "GO:0007059",  # chromosome segregation
    "GO:0006413",  # translational initiation
    "GO:0008033",  # tRNA processing
    "GO:0006457",  # protein folding
    "GO:0000070",  # mitotic sister chromatid segregation
    "GO:0006368",  # transcription elongation by RNA polymerase II
    "GO:0042273",  # ribosomal large subunit biogenesis
    "GO:0000184",  # nuclear-transcribed mRNA catabolic process, nonsense-mediated decay
    "GO:0006406",  # mRNA export from nucleus
    "GO:0006606",  # protein import into nucleus
    "GO:0016567",  # protein ubiquitination
    "GO:0006888",  # endoplasmic reticulum to Golgi vesicle-mediated transport
    "GO:0006099",  # tricarboxylic acid cycle
    "GO:0006281",  # DNA repair
)
N_OTHER = 600
MIN_OTHER_GO_TERMS = 12
TARGET_SIZE = 5000
SELECTION_SEED = 20240611
CATEGORY_ORDER: tuple[str, ...] = (*FAMILY_PATTERNS, "other", "background")

_COMPILED = {
    family: re.compile("|".join(f"(?:{p})" for p in pats)) for family, pats in FAMILY_PATTERNS.items()
}
_EXCLUDED = {
    family: re.compile("|".join(f"(?:{p})" for p in pats)) for family, pats in FAMILY_EXCLUDE.items()
}


def family_of(symbol: str) -> str | None:
    """The first family whose pattern matches the whole symbol, or None."""
    for family, pattern in _COMPILED.items():
        if pattern.fullmatch(symbol):
            excluded = _EXCLUDED.get(family)
            if excluded is not None and excluded.fullmatch(symbol):
                continue
            return family
    return None


def select_bundled_genes(genes: pd.DataFrame, go_annotations: pd.DataFrame) -> pd.DataFrame:
    """Pick the bundled genes and their category, reproducibly.

    ``genes``: one row per protein-coding gene with ``symbol`` and ``go_ids`` (lists).
    ``go_annotations``: ``symbol``, ``go_id`` pairs of direct annotations.
    Returns ``genes``' rows with a ``category`` column, ordered by ``CATEGORY_ORDER`` then symbol.
    """
    annotated = genes[genes["go_ids"].map(len) > 0].copy()
    annotated["category"] = annotated["symbol"].map(family_of)
    rng = np.random.default_rng(SELECTION_SEED)

    essential = set(go_annotations.loc[go_annotations["go_id"].isin(ESSENTIAL_PROCESS_GO_IDS), "symbol"])
    unassigned = annotated["category"].isna()
    other_pool = annotated[
        unassigned
        & annotated["symbol"].isin(essential)
        & (annotated["go_ids"].map(len) >= MIN_OTHER_GO_TERMS)
    ].sort_values("symbol")
    n_other = min(N_OTHER, len(other_pool))
    other = other_pool.index[np.sort(rng.choice(len(other_pool), size=n_other, replace=False))]
    annotated.loc[other, "category"] = "other"

    background_pool = annotated[annotated["category"].isna()].sort_values("symbol")
    n_background = max(0, min(TARGET_SIZE - int(annotated["category"].notna().sum()), len(background_pool)))
    background = background_pool.index[
        np.sort(rng.choice(len(background_pool), size=n_background, replace=False))
    ]
    annotated.loc[background, "category"] = "background"

    chosen = annotated[annotated["category"].notna()].copy()
    rank = {name: i for i, name in enumerate(CATEGORY_ORDER)}
    chosen["_rank"] = chosen["category"].map(rank)
    chosen = chosen.sort_values(["_rank", "symbol"]).drop(columns="_rank")
    return chosen.reset_index(drop=True)
