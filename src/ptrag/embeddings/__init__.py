"""Gene embeddings: load GenePT or other tables, build GenePT-style embeddings offline, resolve symbols.

Public API:

- :class:`GeneEmbeddings` and :func:`load_embeddings` (``"bundled"`` or a file);
- :func:`resolve_genes` → :class:`Resolution` (exact, case-insensitive, alias; error/drop/zero);
- :mod:`ptrag.embeddings.bundled`: the gene table, GO terms, aliases and embeddings shipped with ptrag;
- :func:`ptrag.embeddings.build.build_embeddings`: annotation → text → all-MiniLM-L6-v2.
"""

from ptrag.embeddings.loaders import load_embeddings
from ptrag.embeddings.resolve import EmbeddingCoverageWarning, Resolution, default_aliases, resolve_genes
from ptrag.embeddings.types import GeneEmbeddings

__all__ = [
    "EmbeddingCoverageWarning",
    "GeneEmbeddings",
    "Resolution",
    "default_aliases",
    "load_embeddings",
    "resolve_genes",
]
