"""Which gene priors to combine? The ridge reference on each combination, on validation perturbations.

    python benchmarks/prior_validation.py DATA_DIR [--split split_unseen.toml] [--role val]

``DATA_DIR`` holds ``data.h5ad`` and the split (``ptrag simulate --preset replogle-like --out DIR``
writes both). For every combination of the registered priors, the ``linear`` reference (a ridge map
per cell type from the combined gene vector to the training shift, λ by leave-one-out) predicts the
shift of each ``--role`` group from the split's training groups; it prints the mean pearson_delta
(Pearson of predicted and real shift per group) and the mean squared error against the real group
shift. ``embedding.sources``' default was chosen from this on the validation groups
(docs/priors.md); the test groups are for reporting, not choosing.
"""

from __future__ import annotations

import argparse
import itertools
import os
import warnings
from pathlib import Path

import numpy as np

os.environ.setdefault("OMP_NUM_THREADS", "1")


def main() -> None:
    from ptrag.data.loading import load_dataset
    from ptrag.data.splits import Split
    from ptrag.embeddings import EmbeddingCoverageWarning
    from ptrag.embeddings.priors import PRIOR_NAMES, build_data_tables, combine_priors, load_prior_tables
    from ptrag.evaluation.shifts import (
        ShiftInputs,
        default_retrieval,
        linear_shifts,
        train_mean_by_cell_type,
    )
    from ptrag.retrieval import ResponseMemory

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--split", default="split_unseen.toml")
    parser.add_argument("--role", default="val", choices=("val", "test"))
    args = parser.parse_args()
    dataset = load_dataset(args.data_dir / "data.h5ad")
    split = Split.read(args.data_dir / args.split)
    roles = split.roles(dataset)
    train = roles == "train"
    tables = load_prior_tables(PRIOR_NAMES, "bundled", build_data_tables(PRIOR_NAMES, dataset))
    memory = ResponseMemory.from_training_cells(dataset, train)
    real = ResponseMemory.from_training_cells(dataset, roles == args.role)
    truth = dict(zip(zip(real.cell_types, real.perturbations, strict=True), real.shifts, strict=True))
    groups = tuple(split.groups(dataset, args.role))
    observed = np.stack([truth[g] for g in groups])
    means, sources = train_mean_by_cell_type(memory, sorted({c for c, _ in groups}))
    perturbations = sorted(set(dataset.perturbations()))
    print(f"{len(groups)} {args.role} groups of {args.split}; linear reference per prior combination")
    print("| priors | pearson_delta | MSE |")
    print("|---|---|---|")
    combos = [c for n in range(1, len(PRIOR_NAMES) + 1) for c in itertools.combinations(PRIOR_NAMES, n)]
    for combo in combos:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", EmbeddingCoverageWarning)
            combined = combine_priors(perturbations, {p: tables[p] for p in combo}, policy="drop")
        vectors = {gene: combined.matrix[i] for i, gene in enumerate(combined.genes)}
        inputs = ShiftInputs(memory, groups, vectors, means, sources, default_retrieval())
        predicted, _ = linear_shifts(inputs)
        pearson = np.mean([np.corrcoef(p, o)[0, 1] for p, o in zip(predicted, observed, strict=True)])
        print(f"| {' + '.join(combo)} | {pearson:.3f} | {np.mean((predicted - observed) ** 2):.5f} |")
    baseline = np.stack([means[c] for c, _ in groups])
    pearson = np.mean([np.corrcoef(p, o)[0, 1] for p, o in zip(baseline, observed, strict=True)])
    print(f"| train_mean | {pearson:.3f} | {np.mean((baseline - observed) ** 2):.5f} |")


if __name__ == "__main__":
    main()
