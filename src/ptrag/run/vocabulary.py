"""The perturbation vocabulary: gene embeddings under the run's policy, and covering new queries.

Training embeds every perturbation of the data; prediction extends the trained spec with the
perturbations and cell types it has never seen, by the same rules.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from ptrag.config import Config
from ptrag.embeddings import load_embeddings, resolve_genes
from ptrag.errors import format_list
from ptrag.run.spec import ModelSpec

log = logging.getLogger(__name__)


def resolve_vocabulary(names: Sequence[str], config: Config) -> tuple[list[str], np.ndarray, str]:
    """Embeddings for ``names`` under the configured source and missing-gene policy."""
    embeddings = load_embeddings(config.embedding.source)
    resolution = resolve_genes(embeddings, list(names), policy=config.embedding.missing)
    return list(resolution.genes), np.asarray(resolution.matrix, dtype=np.float32), embeddings.source


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
        resolved, matrix, _ = resolve_vocabulary(unknown, config)
        spec = spec.extended(resolved, matrix)
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
