"""The perturbation vocabulary: gene embeddings under the run's policy, and covering new queries.

Training embeds every perturbation of the data; prediction extends the trained spec with the
perturbations and cell types it has never seen, by the same rules.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from ptrag.config import Config
from ptrag.embeddings import GeneEmbeddings
from ptrag.embeddings.priors import CombinedPriors, combine_priors, load_prior_tables
from ptrag.errors import format_list
from ptrag.run.spec import ModelSpec

__all__ = ["resolve_vocabulary", "screenable_genes", "spec_covering"]

log = logging.getLogger(__name__)


def resolve_vocabulary(
    names: Sequence[str], config: Config, data_tables: Mapping[str, GeneEmbeddings] | None = None
) -> CombinedPriors:
    """Vectors for ``names`` from the configured gene priors, under the missing-gene policy.

    ``data_tables``: the priors built from the training data (``ModelSpec.prior_tables``).
    """
    tables = load_prior_tables(config.embedding.sources, config.embedding.source, data_tables)
    return combine_priors(list(names), tables, policy=config.embedding.missing)


def spec_covering(
    spec: ModelSpec, config: Config, perturbations: Sequence[str], cell_types: Sequence[str]
) -> ModelSpec:
    """``spec`` extended with the perturbations and cell types it has never seen.

    Unseen perturbations are embedded under the run's ``embedding.missing`` policy; with ``drop``
    those without an embedding stay out of the vocabulary (callers leave their groups out, as
    training did). An unseen cell type is added with one warning line: the model has no
    training data for it, and the memory arm retrieves only the perturbation's responses measured
    in the training cell types.
    """
    unknown = sorted(set(perturbations) - set(spec.vocabulary))
    if unknown:
        resolved = resolve_vocabulary(unknown, config, spec.prior_tables)
        spec = spec.extended(resolved.genes, resolved.matrix)
    new_types = [c for c in dict.fromkeys(cell_types) if c not in spec.cell_types]
    if new_types:
        log.warning(
            "Cell type(s) %s were not seen in training: predicted from their own control cells, "
            "with no training data of that type (memory arm: only the perturbation's responses "
            "measured in %s).",
            format_list(new_types),
            format_list(spec.cell_types),
        )
        spec = spec.with_cell_types(new_types)
    return spec


def screenable_genes(config: Config, data_tables: Mapping[str, GeneEmbeddings] | None = None) -> list[str]:
    """Every gene some configured prior covers, in prior order (the text table's order first)."""
    tables = load_prior_tables(config.embedding.sources, config.embedding.source, data_tables)
    return list(dict.fromkeys(symbol for table in tables.values() for symbol in table.symbols))
