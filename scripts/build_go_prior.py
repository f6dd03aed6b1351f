"""Build the GO gene prior shipped with ptrag from the bundled gene table.

    python scripts/build_go_prior.py [--out src/ptrag/embeddings/resources]

Reads ``gene_table.parquet`` (run ``scripts/build_gene_table.py`` first when the annotation
changes), builds the gene × GO-term IDF matrix and its 128-d truncated SVD with one BLAS thread
(``ptrag.embeddings.priors.build_go_embeddings``), and writes ``go_embeddings.npz`` (float32) and the
``go_prior`` entry of ``PROVENANCE.json``. Shipping the vectors, instead of building them at run
time, keeps them identical on every machine: ARPACK's result depends on the BLAS and its threads,
and a screen must embed a new gene exactly as its run embedded the training genes.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from ptrag.embeddings.build import save_embeddings_npz
from ptrag.embeddings.bundled import PROVENANCE_FILE, load_all_genes
from ptrag.embeddings.priors import GO_DIM, GO_EMBEDDINGS_FILE, MIN_GO_TERM_GENES, build_go_embeddings
from ptrag.io import atomic_write_text

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "src" / "ptrag" / "embeddings" / "resources"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="Where to write the resource.")
    args = parser.parse_args()
    started = time.perf_counter()
    table = load_all_genes()
    prior = build_go_embeddings(table)
    path = args.out / GO_EMBEDDINGS_FILE
    save_embeddings_npz(path, prior)
    path.chmod(0o644)  # atomic writes create private files; package data must be world-readable
    provenance_path = args.out / PROVENANCE_FILE
    provenance = json.loads(provenance_path.read_text())
    provenance["go_prior"] = {
        "file": GO_EMBEDDINGS_FILE,
        "genes": len(prior),
        "dim": GO_DIM,
        "min_genes_per_term": MIN_GO_TERM_GENES,
        "weighting": "inverse document frequency, rows L2-normalised, truncated SVD "
        "(scipy svds, one BLAS thread)",
    }
    atomic_write_text(provenance_path, json.dumps(provenance, indent=2) + "\n")
    provenance_path.chmod(0o644)
    print(
        f"wrote {len(prior)} genes × {prior.dim} ({path.stat().st_size / 1e6:.1f} MB) to {path} in "
        f"{time.perf_counter() - started:.1f} s"
    )


if __name__ == "__main__":
    main()
