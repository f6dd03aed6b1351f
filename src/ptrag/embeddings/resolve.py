"""Match a dataset's gene names to the rows of an embedding table, and report coverage.

Each requested gene is matched, in this order:

1. exactly;
2. case-insensitively, when exactly one embedded symbol matches;
3. through aliases (org.Hs.eg.db's alias table): the gene's official symbol, or another alias of
   that official symbol, when it names exactly one embedded row. This handles both a dataset using
   an old name (``AARS``) with current embeddings (``AARS1``) and the reverse (GenePT predates some
   renames).

Genes that match nothing are *missing*. ``policy="error"`` (the default) raises an EmbeddingError
that lists them; ``"drop"`` leaves them out and ``"zero"`` gives them zero vectors, each with a
warning. A zero vector is never used silently.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from ptrag.embeddings.types import GeneEmbeddings
from ptrag.errors import EmbeddingError, format_list

__all__ = ["EmbeddingCoverageWarning", "Resolution", "default_aliases", "resolve_genes", "resolve_quietly"]

logger = logging.getLogger(__name__)

MissingPolicy = Literal["error", "drop", "zero"]
POLICIES: tuple[str, ...] = ("error", "drop", "zero")


class EmbeddingCoverageWarning(UserWarning):
    """Some genes have no embedding and were dropped or zero-filled as the user asked."""


@dataclass(frozen=True, eq=False)
class Resolution:
    """The outcome of matching ``requested`` genes to an embedding table.

    ``genes``: the genes kept, in request order (all requested genes unless policy is "drop");
    ``matrix``: their vectors, float32 [len(genes), D] (zero rows for missing genes under "zero");
    ``matched``: requested gene → embedded symbol used; ``how``: requested gene → "exact",
    "case-insensitive" or "alias"; ``missing``: requested genes without a match.
    """

    requested: tuple[str, ...]
    genes: tuple[str, ...]
    matrix: np.ndarray
    matched: Mapping[str, str]
    how: Mapping[str, str]
    missing: tuple[str, ...]
    policy: str
    source: str

    @property
    def coverage(self) -> float:
        """Fraction of distinct requested genes that have an embedding."""
        distinct = len(set(self.requested))
        return 1.0 if distinct == 0 else (distinct - len(set(self.missing))) / distinct

    def counts(self) -> dict[str, int]:
        result = {"exact": 0, "case-insensitive": 0, "alias": 0, "missing": len(self.missing)}
        for kind in self.how.values():
            result[kind] += 1
        return result

    def summary(self) -> str:
        counts = self.counts()
        distinct = len(set(self.requested))
        text = (
            f"{distinct - counts['missing']} of {distinct} genes have an embedding in {self.source} "
            f"({100 * self.coverage:.1f}%: {counts['exact']} exact, {counts['case-insensitive']} "
            f"case-insensitive, {counts['alias']} via alias)"
        )
        if self.missing:
            text += f"; missing: {format_list(self.missing)}"
        return text


@dataclass(frozen=True)
class AliasIndex:
    """Upper-cased lookups: alias → official symbols, official symbol → its aliases."""

    to_symbols: Mapping[str, frozenset[str]]
    to_aliases: Mapping[str, frozenset[str]]

    @classmethod
    def build(cls, aliases: pd.DataFrame | Mapping[str, str | Sequence[str]]) -> AliasIndex:
        if isinstance(aliases, pd.DataFrame):
            absent = {"alias", "symbol"} - set(aliases.columns)
            if absent:
                raise EmbeddingError(
                    f"The alias table needs columns 'alias' and 'symbol'; it lacks {sorted(absent)}."
                )
            pairs = list(zip(aliases["alias"].astype(str), aliases["symbol"].astype(str), strict=True))
        else:
            pairs = [
                (str(alias), str(symbol))
                for alias, symbols in aliases.items()
                for symbol in ([symbols] if isinstance(symbols, str) else symbols)
            ]
        to_symbols: dict[str, set[str]] = {}
        to_aliases: dict[str, set[str]] = {}
        for alias, symbol in pairs:
            to_symbols.setdefault(alias.upper(), set()).add(symbol)
            to_aliases.setdefault(symbol.upper(), set()).add(alias)
        return cls(
            to_symbols={k: frozenset(v) for k, v in to_symbols.items()},
            to_aliases={k: frozenset(v) for k, v in to_aliases.items()},
        )

    def officials(self, gene: str) -> set[str]:
        """The official symbols ``gene`` stands for: itself if official, else what it is an alias of."""
        if gene.upper() in self.to_aliases:
            return {gene}
        return set(self.to_symbols.get(gene.upper(), ()))


@lru_cache(maxsize=2)
def _default_alias_table(annotation_dir: str | None) -> tuple[pd.DataFrame, str]:
    from ptrag.embeddings.annotation import Annotation
    from ptrag.embeddings.bundled import load_bundled_aliases

    try:
        annotation = Annotation.open(annotation_dir, download=False)
        return annotation.aliases, f"org.Hs.eg.db ({annotation.org_path})"
    except EmbeddingError:
        return load_bundled_aliases(), "the bundled alias table"


def default_aliases(annotation_dir: str | Path | None = None) -> pd.DataFrame:
    """org.Hs.eg.db's alias table when the annotation cache (or ``annotation_dir``) exists, else the
    bundled copy (same source, all protein-coding genes)."""
    table, origin = _default_alias_table(None if annotation_dir is None else str(annotation_dir))
    logger.debug("Gene aliases from %s", origin)
    return table


def _match(
    gene: str,
    embeddings: GeneEmbeddings,
    by_upper: Mapping[str, list[str]],
    alias_index: AliasIndex | None,
) -> tuple[str, str] | None:
    if gene in embeddings:
        return gene, "exact"
    same_case = by_upper.get(gene.upper(), [])
    if len(same_case) == 1:
        return same_case[0], "case-insensitive"
    if alias_index is None:
        return None
    officials = alias_index.officials(gene)
    # First the current official symbol; then, for tables built with older names, the other aliases
    # of that symbol, skipping any alias that is itself another gene's official symbol.
    other_names = {
        alias
        for official in officials
        for alias in alias_index.to_aliases.get(official.upper(), ())
        if alias.upper() not in alias_index.to_aliases and alias.upper() != gene.upper()
    }
    for names in (officials - {gene}, other_names):
        hits = {hit for name in names for hit in by_upper.get(name.upper(), [])}
        if len(hits) == 1:
            return hits.pop(), "alias"
        if len(hits) > 1:
            logger.debug("Gene %s is ambiguous via aliases: %s", gene, sorted(hits))
            return None
    return None


def resolve_genes(
    embeddings: GeneEmbeddings,
    genes: Sequence[str],
    policy: MissingPolicy = "error",
    aliases: pd.DataFrame | Mapping[str, str | Sequence[str]] | None = None,
) -> Resolution:
    """Match ``genes`` to ``embeddings`` (exact, case-insensitive, alias) under ``policy``.

    ``aliases``: a DataFrame with ``alias`` and ``symbol`` columns or a mapping alias → symbol(s);
    default :func:`default_aliases`.
    """
    if policy not in POLICIES:
        raise EmbeddingError(
            f"Unknown missing-gene policy {policy!r}; choose one of {format_list(POLICIES)}."
        )
    requested = tuple(str(g) for g in genes)
    by_upper: dict[str, list[str]] = {}
    for symbol in embeddings.symbols:
        by_upper.setdefault(symbol.upper(), []).append(symbol)
    alias_index: AliasIndex | None = None
    matched: dict[str, str] = {}
    how: dict[str, str] = {}
    missing: list[str] = []
    for gene in dict.fromkeys(requested):
        result = _match(gene, embeddings, by_upper, None)
        if result is None:
            if alias_index is None:  # build the alias index only when some gene needs it
                alias_index = AliasIndex.build(default_aliases() if aliases is None else aliases)
            result = _match(gene, embeddings, by_upper, alias_index)
        if result is None:
            missing.append(gene)
        else:
            matched[gene], how[gene] = result
    if missing and policy == "error":
        raise EmbeddingError(
            f"{len(missing)} of {len(set(requested))} genes have no embedding in {embeddings.source} "
            f"(tried exact, case-insensitive and alias matches): {format_list(missing)}. Check the names, "
            "or use embeddings that cover them (`ptrag embed-genes --coverage` shows what a table covers); "
            "a training run can instead leave them out or zero them with the missing-gene policy "
            "embedding.missing = 'drop' or 'zero'."
        )
    kept = requested if policy == "zero" else tuple(g for g in requested if g in matched)
    matrix = np.zeros((len(kept), embeddings.dim), dtype=np.float32)
    for row, gene in enumerate(kept):
        if gene in matched:
            matrix[row] = embeddings.matrix[embeddings.index(matched[gene])]
    resolution = Resolution(
        requested=requested,
        genes=kept,
        matrix=matrix,
        matched=matched,
        how=how,
        missing=tuple(missing),
        policy=policy,
        source=embeddings.source,
    )
    if missing:
        action = "dropped" if policy == "drop" else "given zero vectors"
        message = (
            f"{len(missing)} gene(s) without an embedding were {action} (policy {policy!r}): "
            + format_list(missing)
        )
        warnings.warn(message, EmbeddingCoverageWarning, stacklevel=2)
        logger.warning(message)
    return resolution


def resolve_quietly(
    embeddings: GeneEmbeddings,
    genes: Sequence[str],
    aliases: pd.DataFrame | Mapping[str, str | Sequence[str]] | None = None,
) -> Resolution:
    """:func:`resolve_genes` with policy "drop" and no warning or log line, for callers that report
    the missing genes themselves."""
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", EmbeddingCoverageWarning)
            return resolve_genes(embeddings, genes, policy="drop", aliases=aliases)
    finally:
        logger.setLevel(level)
