"""Gene priors: named sources of what is known about a target gene before anyone perturbs it.

Each prior is a table of gene vectors (:class:`GeneEmbeddings`); a run combines the ones named in
``embedding.sources`` into one vector per gene, used everywhere a gene embedding is used (stage-1
retrieval, the memory's neighbour weights, the perturbation token, the ``linear`` reference).

- ``text``: the table of ``embedding.source`` (the bundled MiniLM embeddings of each gene's name and
  GO-term text, or a user's GenePT file).
- ``go``: the annotation graph itself. A gene × GO-term matrix (direct annotations from the bundled
  org.Hs.eg.db table, terms weighted by inverse document frequency, rows L2-normalised), reduced
  to ``GO_DIM`` dimensions by truncated SVD, built at release time and shipped (float32). Genes
  without a GO term shared with another gene are not covered.
- ``coexpression``: the user's own data. A gene's vector is its correlation profile with the
  measured genes across control cells (averaged over cell types, training cells only), reduced to
  ``COEXPRESSION_DIM`` dimensions by its leading eigenvectors. Only measured genes are covered.

Combining: with one prior its vectors are used as they are (so single-prior runs are unchanged);
with several, each block is L2-normalised, blocks a gene lacks are zeros (counted in the log), and
the blocks are concatenated and scaled by 1/sqrt(number of priors), so the cosine of two fully
covered genes is the mean of their per-prior cosines.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.sparse.linalg import svds

from ptrag.data.sets import draw_controls
from ptrag.embeddings.types import GeneEmbeddings
from ptrag.errors import EmbeddingError, format_list

__all__ = [
    "GO_DIM",
    "GO_EMBEDDINGS_FILE",
    "MIN_GO_TERM_GENES",
    "PRIOR_NAMES",
    "PRIOR_REGISTRY",
    "CombinedPriors",
    "build_data_tables",
    "build_go_embeddings",
    "check_sources",
    "combine_priors",
    "go_embeddings",
    "load_prior_tables",
]

if TYPE_CHECKING:
    from ptrag.data.dataset import PerturbationDataset

log = logging.getLogger(__name__)

GO_DIM = 128
COEXPRESSION_DIM = 64
# Control cells per cell type used for the correlation profiles (a seeded sample above this).
COEXPRESSION_MAX_CELLS = 4000
COEXPRESSION_SEED = 0
MIN_GO_TERM_GENES = 2  # a term held by one gene links no pair of genes
GO_EMBEDDINGS_FILE = "go_embeddings.npz"  # in ptrag/embeddings/resources (scripts/build_go_prior.py)


@dataclass(frozen=True)
class GenePrior:
    """One registered prior: its name, what it is, and whether it is built from the user's data."""

    name: str
    description: str
    from_data: bool


_ENTRIES: tuple[GenePrior, ...] = (
    GenePrior("text", "text embedding of the gene's name and GO terms (embedding.source)", False),
    GenePrior("go", f"GO annotation graph: IDF-weighted gene × term matrix, SVD to {GO_DIM} d", False),
    GenePrior(
        "coexpression",
        f"correlation profile with the measured genes across training control cells, {COEXPRESSION_DIM} d",
        True,
    ),
)
PRIOR_REGISTRY: dict[str, GenePrior] = {p.name: p for p in _ENTRIES}
PRIOR_NAMES: tuple[str, ...] = tuple(PRIOR_REGISTRY)
DEFAULT_SOURCES: tuple[str, ...] = ("text",)


def check_sources(sources: Sequence[str]) -> tuple[str, ...]:
    """``sources`` as a tuple, or an EmbeddingError naming the unknown or repeated prior."""
    names = tuple(str(s) for s in sources)
    unknown = [s for s in names if s not in PRIOR_REGISTRY]
    if unknown:
        raise EmbeddingError(
            f"Unknown gene prior(s) {format_list(unknown)} in embedding.sources; "
            f"known: {format_list(PRIOR_NAMES)}."
        )
    if not names:
        raise EmbeddingError(f"embedding.sources is empty; name at least one of {format_list(PRIOR_NAMES)}.")
    if len(set(names)) != len(names):
        raise EmbeddingError(f"embedding.sources names a prior twice: {list(names)}.")
    return names


def build_go_embeddings(table: pd.DataFrame) -> GeneEmbeddings:
    """The ``go`` prior from a gene table with ``symbol`` and ``go_ids`` (lists of GO ids).

    Run at release time by ``scripts/build_go_prior.py`` (~2 s): ARPACK's result depends on the
    BLAS threads, so the package ships the vectors instead of rebuilding them, and every machine
    embeds a new gene exactly as the run it predicts with embedded its training genes.
    """
    from threadpoolctl import threadpool_limits

    term_column: dict[str, int] = {}
    rows, columns = [], []
    for row, ids in enumerate(table["go_ids"]):
        for term in sorted(set(ids)):
            columns.append(term_column.setdefault(term, len(term_column)))
            rows.append(row)
    n_genes = len(table)
    counts = sp.csr_matrix(
        (np.ones(len(rows)), (rows, columns)), shape=(n_genes, len(term_column)), dtype=np.float64
    )
    genes_per_term = np.asarray(counts.sum(axis=0)).ravel()
    shared = genes_per_term >= MIN_GO_TERM_GENES
    weighted = counts[:, shared] @ sp.diags(np.log(n_genes / genes_per_term[shared]))
    norms = np.sqrt(np.asarray(weighted.multiply(weighted).sum(axis=1)).ravel())
    covered = np.flatnonzero(norms > 0)
    unit = sp.diags(1.0 / norms[covered]) @ weighted[covered]
    # A fixed start vector and one BLAS thread make the build repeatable on one machine.
    start = np.full(min(unit.shape), 1.0 / np.sqrt(min(unit.shape)))
    with threadpool_limits(limits=1):
        u, s, _ = svds(unit, k=min(GO_DIM, min(unit.shape) - 1), v0=start)
    order = np.argsort(-s)
    vectors = _unit_rows(u[:, order] * s[order])
    symbols = tuple(str(table["symbol"].iloc[i]) for i in covered)
    return GeneEmbeddings(symbols=symbols, matrix=vectors, source="go")


@lru_cache(maxsize=1)
def go_embeddings() -> GeneEmbeddings:
    """The ``go`` prior shipped with ptrag: every bundled gene with a GO term shared with another."""
    from ptrag.embeddings.bundled import read_stored_matrix, resource_path

    symbols, matrix, _ = read_stored_matrix(resource_path(GO_EMBEDDINGS_FILE))
    matrix = matrix.astype(np.float32)
    matrix.setflags(write=False)
    return GeneEmbeddings(symbols=symbols, matrix=matrix, source="go")


def coexpression_embeddings(dataset: PerturbationDataset) -> GeneEmbeddings:
    """The ``coexpression`` prior of the measured genes, from ``dataset``'s control cells.

    Only control cells are read (whatever a split says of them, as in training), so no held-out
    perturbed cell enters. Genes constant in every cell type's controls are not covered.
    """
    is_control = np.asarray(dataset.is_control, dtype=bool)
    cell_types = dataset.obs["cell_type"].to_numpy()
    rng = np.random.default_rng(COEXPRESSION_SEED)
    total = np.zeros((dataset.n_genes, dataset.n_genes))
    varies = np.zeros(dataset.n_genes, dtype=bool)
    n_types = 0
    for cell_type in dataset.cell_types:
        rows = np.flatnonzero(is_control & (cell_types == cell_type))
        if len(rows) < 3:
            continue
        if len(rows) > COEXPRESSION_MAX_CELLS:
            rows = np.sort(draw_controls(rows, COEXPRESSION_MAX_CELLS, rng))
        values = dataset.expression.rows(rows).astype(np.float64)
        values -= values.mean(axis=0)
        sd = values.std(axis=0)
        alive = sd > 1e-8
        values[:, alive] /= sd[alive]
        values[:, ~alive] = 0.0
        total += values.T @ values / len(rows)
        varies |= alive
        n_types += 1
    if n_types == 0:
        raise EmbeddingError(
            "The coexpression prior needs at least 3 control cells in some cell type; the data has fewer."
        )
    covered = np.flatnonzero(varies)
    # Rows are profiles; the diagonal stays 1 so that two partners' profiles share their own link.
    profiles = (total / n_types)[np.ix_(covered, covered)]
    dim = min(COEXPRESSION_DIM, len(covered))
    values, vectors = np.linalg.eigh(profiles)
    top = np.argsort(-np.abs(values))[:dim]
    embedded = _unit_rows(vectors[:, top] * values[top])
    symbols = tuple(dataset.genes[i] for i in covered)
    return GeneEmbeddings(symbols=symbols, matrix=embedded, source="coexpression")


def _unit_rows(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return (matrix / np.where(norms > 0, norms, 1.0)).astype(np.float32)


@dataclass(frozen=True)
class CombinedPriors:
    """Vectors of the requested genes under several priors, and which prior covered which gene."""

    genes: tuple[str, ...]
    matrix: np.ndarray  # (len(genes), sum of prior dims) float32
    covered: Mapping[str, np.ndarray]  # prior → (len(genes),) bool
    source: str

    def coverage_line(self) -> str:
        n = len(self.genes)
        parts = [f"{name} {int(mask.sum())}/{n}" for name, mask in self.covered.items()]
        none = int((~np.any(np.stack(list(self.covered.values())), axis=0)).sum()) if n else 0
        line = f"gene priors cover {', '.join(parts)} perturbations"
        if len(self.covered) > 1:
            line += " (a prior's block is zeros for genes it does not cover)"
        return line + (f"; {none} have no prior at all" if none else "")


def combine_priors(
    genes: Sequence[str],
    tables: Mapping[str, GeneEmbeddings],
    policy: str = "error",
    quiet: bool = False,
) -> CombinedPriors:
    """Vectors of ``genes`` from ``tables`` (ordered prior name → table), combined as documented.

    A gene no prior covers follows ``policy`` (embedding.missing): "error" raises an EmbeddingError
    naming it, "drop" leaves it out, "zero" gives it a zero vector; any of these is logged and
    warned about unless ``quiet`` (for callers that report missing genes themselves, policy "drop").
    """
    from ptrag.embeddings.resolve import EmbeddingCoverageWarning, resolve_genes, resolve_quietly

    requested = [str(g) for g in genes]
    if quiet and policy != "drop":
        raise ValueError("quiet=True is for policy 'drop' only: other policies must be seen to act")
    if len(tables) == 1:
        ((name, table),) = tables.items()
        resolution = (
            resolve_quietly(table, requested)
            if quiet
            else resolve_genes(table, requested, policy=policy)  # type: ignore[arg-type]
        )
        covered = np.array([g not in set(resolution.missing) for g in resolution.genes])
        return CombinedPriors(resolution.genes, resolution.matrix, {name: covered}, table.source)
    blocks, covered = [], {}
    for name, table in tables.items():
        resolution = resolve_quietly(table, requested)
        position = {g: i for i, g in enumerate(resolution.genes)}
        block = np.zeros((len(requested), table.dim), dtype=np.float32)
        hit = np.array([g in position for g in requested], dtype=bool)
        if hit.any():
            block[hit] = _unit_rows(resolution.matrix[[position[g] for g in requested if g in position]])
        blocks.append(block)
        covered[name] = hit
    any_prior = np.any(np.stack(list(covered.values())), axis=0)
    lacking = [g for g, ok in zip(requested, any_prior, strict=True) if not ok]
    if lacking and policy == "error":
        raise EmbeddingError(
            f"{len(lacking)} of {len(requested)} genes have no embedding in any of the gene priors "
            f"{format_list(tables)} (tried exact, case-insensitive and alias matches): "
            f"{format_list(lacking)}. Check the names, or use priors that cover them; a training run "
            "can instead leave them out or zero them with embedding.missing = 'drop' or 'zero'."
        )
    matrix = np.hstack(blocks) / np.float32(np.sqrt(len(tables)))
    keep = any_prior if policy == "drop" else np.ones(len(requested), dtype=bool)
    if lacking and not quiet:
        action = "dropped" if policy == "drop" else "given zero vectors"
        message = f"{len(lacking)} gene(s) covered by no gene prior were {action}: {format_list(lacking)}"
        warnings.warn(message, EmbeddingCoverageWarning, stacklevel=2)
        log.warning(message)
    return CombinedPriors(
        tuple(g for g, k in zip(requested, keep, strict=True) if k),
        matrix[keep].astype(np.float32),
        {name: mask[keep] for name, mask in covered.items()},
        "+".join(tables),
    )


def build_data_tables(sources: Sequence[str], dataset: PerturbationDataset) -> dict[str, GeneEmbeddings]:
    """The priors of ``sources`` that are built from the data (stored with the trained run)."""
    builders = {"coexpression": coexpression_embeddings}
    return {name: builders[name](dataset) for name in sources if PRIOR_REGISTRY[name].from_data}


def load_prior_tables(
    sources: Sequence[str], text_source: str, data_tables: Mapping[str, GeneEmbeddings] | None = None
) -> dict[str, GeneEmbeddings]:
    """Each prior of ``sources``, in order: text from ``text_source``, data priors from ``data_tables``."""
    from ptrag.embeddings.loaders import load_embeddings

    tables: dict[str, GeneEmbeddings] = {}
    for name in check_sources(sources):
        if name == "text":
            tables[name] = load_embeddings(text_source)
        elif name == "go":
            tables[name] = go_embeddings()
        elif data_tables is not None and name in data_tables:
            tables[name] = data_tables[name]
        else:
            raise EmbeddingError(
                f"The {name} prior is built from the training data, and this run holds none "
                "(it was trained without it); retrain with it in embedding.sources."
            )
    return tables
