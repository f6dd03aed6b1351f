"""Build GenePT-style embeddings offline: annotation → text → MiniLM → L2-normalised matrix."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ptrag.embeddings.annotation import Annotation
from ptrag.embeddings.bundled import bundled_texts, load_bundled_aliases, load_bundled_embeddings
from ptrag.embeddings.cache import default_embedding_cache_dir, encode_with_cache
from ptrag.embeddings.encoder import EMBEDDING_DIM, MODEL_NAME, encode_texts
from ptrag.embeddings.resolve import resolve_quietly
from ptrag.embeddings.text import TEXT_TEMPLATE_VERSION, texts_for_table
from ptrag.embeddings.types import GeneEmbeddings
from ptrag.errors import EmbeddingError, format_list
from ptrag.io import atomic_save

__all__ = ["OFFLINE_SOURCE", "EncodeOptions", "build_embeddings", "embed_genes", "save_embeddings_npz"]

OFFLINE_SOURCE = f"offline:{MODEL_NAME}:GO-text-{TEXT_TEMPLATE_VERSION}"
logger = logging.getLogger(__name__)


class NoKnownGenesError(EmbeddingError):
    """Not one requested gene is a protein-coding symbol or alias in the annotation."""


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
        raise NoKnownGenesError("None of the requested genes is a protein-coding gene in org.Hs.eg.db.")
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


@dataclass(frozen=True)
class EncodeOptions:
    """How genes missing from the bundled table are encoded (see :func:`build_embeddings`)."""

    threads: int | None = None
    batch_size: int = 64
    progress: bool = True
    use_cache: bool = True


def _build_lacking(
    lacking: list[str], annotation_dir: str | Path | None, skip_unknown: bool, options: EncodeOptions
) -> tuple[GeneEmbeddings | None, list[str]]:
    """Build the genes the bundled table lacks from the annotation packages (fetched if needed)."""
    where = f"in {annotation_dir}" if annotation_dir is not None else "(fetched with apt-get if not cached)"
    logger.warning(
        "%d gene(s) are not in the bundled table of every protein-coding gene: %s. Building them from "
        "the annotation packages %s.",
        len(lacking),
        format_list(lacking),
        where,
    )
    try:
        annotation = Annotation.open(annotation_dir)
    except EmbeddingError as exc:
        if skip_unknown:
            logger.warning("Leaving out %s: %s", format_list(lacking), exc)
            return None, []
        raise EmbeddingError(
            f"{len(lacking)} gene(s) are not in the bundled table ({format_list(lacking)}) and the "
            f"annotation to build them is unavailable: {exc} Or pass --skip-unknown to leave them out."
        ) from exc
    try:
        return build_embeddings(annotation, lacking, skip_unknown=skip_unknown, **asdict(options))
    except NoKnownGenesError:
        if skip_unknown:
            return None, []
        raise


def embed_genes(
    symbols: Sequence[str] | None,
    annotation_dir: str | Path | None = None,
    from_annotation: bool = False,
    skip_unknown: bool = False,
    options: EncodeOptions = EncodeOptions(),
) -> tuple[GeneEmbeddings, list[str], list[str]]:
    """Embeddings for ``symbols`` (every bundled gene when None), the texts, and the genes built.

    Genes the bundled table covers (exact, case-insensitive or alias match) take its vectors; only
    the others are built from the annotation (``build_embeddings``), so a screen of protein-coding
    genes needs no network and no encoder. ``from_annotation`` builds every gene from the
    annotation instead. Output rows are named as requested.
    """
    if from_annotation:
        annotation = Annotation.open(annotation_dir)
        built, texts = build_embeddings(annotation, symbols, skip_unknown=skip_unknown, **asdict(options))
        return built, texts, list(built.symbols)
    bundled = load_bundled_embeddings()
    requested = list(dict.fromkeys(symbols)) if symbols is not None else list(bundled.symbols)
    # The genes lacking are reported by name in _build_lacking.
    resolution = resolve_quietly(bundled, requested, aliases=load_bundled_aliases())
    official = [resolution.matched[g] for g in resolution.genes]
    vectors = dict(zip(resolution.genes, resolution.matrix, strict=True))
    texts = dict(zip(resolution.genes, bundled_texts(official), strict=True))
    built: list[str] = []
    if resolution.missing:
        extra, extra_texts = _build_lacking(list(resolution.missing), annotation_dir, skip_unknown, options)
        if extra is not None:
            built = list(extra.symbols)
            vectors.update(zip(extra.symbols, extra.matrix, strict=True))
            texts.update(zip(extra.symbols, extra_texts, strict=True))
    kept = [g for g in requested if g in vectors]
    embeddings = GeneEmbeddings(
        symbols=tuple(kept),
        matrix=np.stack([vectors[g] for g in kept]) if kept else np.zeros((0, EMBEDDING_DIM), np.float32),
        source=OFFLINE_SOURCE,
        text_template=TEXT_TEMPLATE_VERSION,
    )
    return embeddings, [texts[g] for g in kept], built
