"""Build GenePT-style embeddings offline: annotation → text → MiniLM → L2-normalised matrix."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ptrag.embeddings.annotation import Annotation
from ptrag.embeddings.cache import default_embedding_cache_dir, encode_with_cache
from ptrag.embeddings.encoder import MODEL_NAME, encode_texts
from ptrag.embeddings.text import TEXT_TEMPLATE_VERSION, texts_for_table
from ptrag.embeddings.types import GeneEmbeddings
from ptrag.errors import EmbeddingError, format_list
from ptrag.io import atomic_save

OFFLINE_SOURCE = f"offline:{MODEL_NAME}:GO-text-{TEXT_TEMPLATE_VERSION}"
logger = logging.getLogger(__name__)


def annotation_table(
    annotation: Annotation, symbols: Sequence[str] | None = None, skip_unknown: bool = False
) -> pd.DataFrame:
    """``symbol``, ``entrez_id``, ``full_name``, ``go_ids`` for the requested genes, in request order.

    Requested symbols that are not protein-coding symbols are looked up through the alias table.
    Symbols unknown even as aliases raise EmbeddingError listing them (``skip_unknown``: a warning,
    and they are left out).
    """
    table = annotation.gene_go_ids()
    if symbols is None:
        return table
    by_symbol = table.set_index("symbol", drop=False)
    alias_map = annotation.aliases.groupby("alias")["symbol"].apply(list).to_dict()
    rows, unknown = [], []
    for requested in dict.fromkeys(symbols):
        if requested in by_symbol.index:
            rows.append(by_symbol.loc[requested])
            continue
        official = [s for s in alias_map.get(requested, []) if s in by_symbol.index]
        if len(official) == 1:
            row = by_symbol.loc[official[0]].copy()
            # Keep the user's name so that the output can be indexed by what they asked for.
            row["symbol"] = requested
            rows.append(row)
        else:
            unknown.append(requested)
    if unknown and skip_unknown:
        logger.warning("Skipping %d gene(s) unknown to org.Hs.eg.db: %s", len(unknown), format_list(unknown))
    elif unknown:
        raise EmbeddingError(
            f"{len(unknown)} requested gene(s) are not protein-coding symbols or unambiguous aliases in "
            f"org.Hs.eg.db: {format_list(unknown)}. Fix the names or remove them from the gene list."
        )
    if not rows:
        raise EmbeddingError("None of the requested genes is a protein-coding gene in org.Hs.eg.db.")
    return pd.DataFrame(rows).reset_index(drop=True)


def build_embeddings(
    annotation: Annotation,
    symbols: Sequence[str] | None = None,
    threads: int | None = None,
    batch_size: int = 64,
    progress: bool = True,
    use_cache: bool = True,
    cache_dir: Path | None = None,
    skip_unknown: bool = False,
) -> tuple[GeneEmbeddings, list[str]]:
    """Embed ``symbols`` (all protein-coding genes when None); return the embeddings and the texts.

    Vectors are cached per text under ``cache_dir`` (default ``~/.cache/ptrag/embeddings``) unless
    ``use_cache`` is False, so re-running for overlapping gene lists only encodes new texts.
    """
    table = annotation_table(annotation, symbols, skip_unknown=skip_unknown)
    rows = zip(table["symbol"], table["full_name"], table["go_ids"], strict=True)
    texts = texts_for_table(rows, annotation.go_terms)
    directory = (cache_dir or default_embedding_cache_dir()) if use_cache else None

    def encode(batch: list[str]) -> np.ndarray:
        return encode_texts(batch, threads=threads, batch_size=batch_size, progress=progress)

    matrix, n_cached = encode_with_cache(texts, encode, directory)
    if n_cached:
        logger.info(
            "%d of %d gene texts were already in the embedding cache %s", n_cached, len(texts), directory
        )
    embeddings = GeneEmbeddings(
        symbols=tuple(table["symbol"]),
        matrix=matrix,
        source=OFFLINE_SOURCE,
        text_template=TEXT_TEMPLATE_VERSION,
    )
    return embeddings, texts


def save_embeddings_npz(
    path: str | Path,
    embeddings: GeneEmbeddings,
    float16: bool = False,
    texts: Sequence[str] | None = None,
) -> None:
    """Write ``symbols``, ``matrix``, ``source``, ``text_template`` (and ``texts``) to an .npz, atomically."""
    matrix = embeddings.matrix.astype(np.float16 if float16 else np.float32)
    metadata = {"source": embeddings.source, "text_template": embeddings.text_template}

    def write(tmp: Path) -> None:
        with tmp.open("wb") as handle:
            np.savez_compressed(
                handle,
                symbols=np.array(embeddings.symbols, dtype=str),
                matrix=matrix,
                source=np.array(embeddings.source),
                text_template=np.array(embeddings.text_template or ""),
                metadata=np.array(json.dumps(metadata)),
                **({"texts": np.array(list(texts), dtype=str)} if texts is not None else {}),
            )

    atomic_save(path, write)
