"""The gene table, GO terms, aliases and embeddings that ship inside the package.

Regenerate them with ``python scripts/build_gene_table.py`` (needs apt access or --annotation-dir).
Sources: NCBI Gene and the Gene Ontology, via Bioconductor's org.Hs.eg.db and GO.db as packaged by
Debian; see ``resources/PROVENANCE.json``.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from ptrag.embeddings.types import GeneEmbeddings
from ptrag.errors import EmbeddingError

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
def _gene_table() -> pd.DataFrame:
    table = pd.read_parquet(resource_path(GENE_TABLE_FILE))
    table["go_ids"] = [list(ids) for ids in table["go_ids"]]
    return table


def load_gene_table() -> pd.DataFrame:
    """``symbol``, ``entrez_id``, ``full_name``, ``go_ids`` (list[str]), ``category``, in a fixed order.

    ``category`` is the complex/process family the gene was selected for (see
    ``ptrag.embeddings.families``), ``"other"`` or ``"background"``. A fresh copy on every call.
    """
    table = _gene_table().copy()
    table["go_ids"] = [list(ids) for ids in table["go_ids"]]
    return table


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


@lru_cache(maxsize=1)
def load_bundled_embeddings() -> GeneEmbeddings:
    """384-d all-MiniLM-L6-v2 embeddings of the bundled genes' texts, L2-normalised, float32."""
    path = resource_path(EMBEDDINGS_FILE)
    with np.load(path, allow_pickle=False) as data:
        symbols = tuple(str(s) for s in data["symbols"])
        matrix = data["matrix"].astype(np.float32)
        template = str(data["text_template"])
    # float16 storage loses ~1e-3 of norm; renormalise so cosine = dot product exactly as documented.
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    matrix = matrix / np.where(norms > 0, norms, 1.0)
    matrix.setflags(write=False)
    return GeneEmbeddings(symbols=symbols, matrix=matrix, source="bundled", text_template=template)


def load_provenance() -> dict[str, object]:
    return json.loads(resource_path(PROVENANCE_FILE).read_text())
