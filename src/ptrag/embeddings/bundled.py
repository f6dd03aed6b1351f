"""The gene table, GO terms, aliases and embeddings that ship inside the package.

Every human protein-coding gene of org.Hs.eg.db is in the table and has an embedding, so nothing is
fetched at run time. Regenerate them with ``python scripts/build_gene_table.py`` (needs apt access or
--annotation-dir). Sources: NCBI Gene and the Gene Ontology, via Bioconductor's org.Hs.eg.db and
GO.db as packaged by Debian; see ``resources/PROVENANCE.json``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from ptrag.embeddings.text import texts_for_table
from ptrag.embeddings.types import GeneEmbeddings
from ptrag.errors import EmbeddingError
from ptrag.keys import BUNDLED_SOURCE

__all__ = [
    "ALIASES_FILE",
    "EMBEDDINGS_FILE",
    "GENE_TABLE_FILE",
    "GO_TERMS_FILE",
    "PROVENANCE_FILE",
    "bundled_texts",
    "load_all_genes",
    "load_bundled_aliases",
    "load_bundled_embeddings",
    "load_gene_table",
    "load_go_terms",
    "load_provenance",
    "read_stored_matrix",
    "resource_path",
]

GENE_TABLE_FILE = "gene_table.parquet"
GO_TERMS_FILE = "go_terms.parquet"
ALIASES_FILE = "gene_aliases.parquet"
EMBEDDINGS_FILE = "gene_embeddings.npz"
PROVENANCE_FILE = "PROVENANCE.json"


def resource_path(name: str) -> Path:
    path = Path(str(resources.files("ptrag.embeddings") / "resources" / name))
    if not path.is_file():
        raise EmbeddingError(
            f"The bundled resource {name} is missing from {path.parent}. Reinstall ptrag, or regenerate it "
            "with `python scripts/build_gene_table.py`."
        )
    return path


@lru_cache(maxsize=1)
def _all_genes() -> pd.DataFrame:
    table = pd.read_parquet(resource_path(GENE_TABLE_FILE))
    table["go_ids"] = [list(ids) for ids in table["go_ids"]]
    return table


def _copy(table: pd.DataFrame) -> pd.DataFrame:
    table = table.copy()
    table["go_ids"] = [list(ids) for ids in table["go_ids"]]
    return table


def load_all_genes() -> pd.DataFrame:
    """Every human protein-coding gene (~20,600): the :func:`load_gene_table` columns, same order.

    Rows follow the embeddings' order: first the genes of :func:`load_gene_table`, then the rest by
    symbol. ``category`` is None for genes outside the simulator's selection and ``go_ids`` is empty
    for genes without GO annotation. A fresh copy on every call.
    """
    return _copy(_all_genes())


def load_gene_table() -> pd.DataFrame:
    """The ~5,000 genes the simulator draws from, with ``category``, in a fixed order.

    Columns ``symbol``, ``entrez_id``, ``full_name``, ``go_ids`` (list[str]), ``category``: the
    complex/process family the gene was selected for (see ``ptrag.embeddings.families``), ``"other"``
    or ``"background"``. Ordered by category, then symbol. A fresh copy on every call.
    """
    table = _all_genes()
    return _copy(table[table["category"].notna()].reset_index(drop=True))


@lru_cache(maxsize=1)
def _go_terms() -> pd.DataFrame:
    return pd.read_parquet(resource_path(GO_TERMS_FILE))


def load_go_terms() -> pd.DataFrame:
    """``go_id``, ``name``, ``ontology`` ("BP"/"MF"/"CC") and ``n_genes`` for every GO id in the table.

    ``n_genes`` is the number of protein-coding genes genome-wide directly annotated to the term.
    """
    return _go_terms().copy()


@lru_cache(maxsize=1)
def _aliases() -> pd.DataFrame:
    return pd.read_parquet(resource_path(ALIASES_FILE))


def load_bundled_aliases() -> pd.DataFrame:
    """``alias`` → ``symbol`` for all human protein-coding genes (org.Hs.eg.db's alias table)."""
    return _aliases().copy()


def read_stored_matrix(path: Path) -> tuple[tuple[str, ...], np.ndarray, str]:
    """Symbols, the matrix exactly as stored (float16) and the text template of an embeddings .npz."""
    with np.load(path, allow_pickle=False) as data:
        return tuple(str(s) for s in data["symbols"]), data["matrix"], str(data["text_template"])


@lru_cache(maxsize=1)
def load_bundled_embeddings() -> GeneEmbeddings:
    """384-d all-MiniLM-L6-v2 embeddings of every protein-coding gene's text, L2-normalised, float32."""
    symbols, stored, template = read_stored_matrix(resource_path(EMBEDDINGS_FILE))
    matrix = stored.astype(np.float32)
    # float16 storage loses ~1e-3 of norm; renormalise so cosine = dot product exactly as documented.
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    matrix = matrix / np.where(norms > 0, norms, 1.0)
    matrix.setflags(write=False)
    return GeneEmbeddings(symbols=symbols, matrix=matrix, source=BUNDLED_SOURCE, text_template=template)


def bundled_texts(symbols: Sequence[str]) -> list[str]:
    """The template texts the bundled vectors of ``symbols`` (official symbols) were encoded from."""
    table = _all_genes().set_index("symbol")
    unknown = [s for s in symbols if s not in table.index]
    if unknown:
        raise EmbeddingError(f"{unknown[:5]} are not symbols of the bundled gene table.")
    rows = table.loc[list(symbols)]
    return texts_for_table(zip(symbols, rows["full_name"], rows["go_ids"], strict=True), _go_terms())


def load_provenance() -> dict[str, object]:
    return json.loads(resource_path(PROVENANCE_FILE).read_text())
