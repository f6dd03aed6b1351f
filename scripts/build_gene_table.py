"""Regenerate the gene table, GO terms, aliases and embeddings bundled in ptrag.

    python scripts/build_gene_table.py [--annotation-dir DIR] [--threads N] [--out DIR]

Steps (all offline once the two Debian packages are cached):
1. Fetch r-bioc-org.hs.eg.db and r-bioc-go.db (apt-get download + dpkg-deb -x, cached in
   ~/.cache/ptrag/annotation) or read the SQLite files under --annotation-dir.
2. Select ~5,000 protein-coding genes (``ptrag.embeddings.families``): every gene of 19 essential
   complexes/processes chosen by HGNC symbol pattern, 600 seeded "other" genes directly annotated to
   core essential processes with rich GO annotation, and seeded "background" genes with any GO
   annotation, up to 5,000.
3. Write texts with template ``TEXT_TEMPLATE_VERSION`` and encode them with all-MiniLM-L6-v2.
4. Write gene_table.parquet, go_terms.parquet, gene_aliases.parquet, gene_embeddings.npz (float16) and
   PROVENANCE.json into src/ptrag/embeddings/resources/.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pandas as pd

from ptrag.embeddings.annotation import DEBIAN_PACKAGES, Annotation
from ptrag.embeddings.build import OFFLINE_SOURCE, build_embeddings, save_embeddings_npz
from ptrag.embeddings.bundled import (
    ALIASES_FILE,
    EMBEDDINGS_FILE,
    GENE_TABLE_FILE,
    GO_TERMS_FILE,
    PROVENANCE_FILE,
)
from ptrag.embeddings.encoder import MODEL_NAME
from ptrag.embeddings.families import SELECTION_SEED, select_bundled_genes
from ptrag.embeddings.text import TEXT_TEMPLATE_VERSION
from ptrag.io import atomic_save, atomic_write_text

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "src" / "ptrag" / "embeddings" / "resources"


def _metadata(annotation: Annotation) -> dict[str, str]:
    import sqlite3

    values: dict[str, str] = {}
    for label, path in (("org.Hs.eg.db", annotation.org_path), ("GO.db", annotation.go_path)):
        connection = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)
        for name, value in connection.execute("SELECT name, value FROM metadata"):
            if "SOURCEDATE" in name or name in ("GOSOURCENAME", "EGSOURCENAME"):
                values[f"{label}:{name}"] = str(value)
        connection.close()
    return values


def _write_parquet(frame: pd.DataFrame, path: Path) -> None:
    atomic_save(path, lambda tmp: frame.to_parquet(tmp, index=False, compression="zstd"))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--annotation-dir", help="Directory holding org.Hs.eg.sqlite and GO.sqlite.")
    parser.add_argument("--threads", type=int, default=None, help="Torch threads for the encoder.")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="Where to write the resources.")
    args = parser.parse_args()

    started = time.perf_counter()
    annotation = Annotation.open(args.annotation_dir)
    genes = annotation.gene_go_ids()
    pairs = genes[["symbol", "go_ids"]].explode("go_ids").rename(columns={"go_ids": "go_id"}).dropna()
    table = select_bundled_genes(genes, pairs)
    table = table[["symbol", "entrez_id", "full_name", "go_ids", "category"]]
    print(table["category"].value_counts().to_string())

    used = {go_id for ids in table["go_ids"] for go_id in ids}
    go_terms = annotation.go_terms[annotation.go_terms["go_id"].isin(used)].reset_index(drop=True)
    embeddings, texts = build_embeddings(annotation, list(table["symbol"]), threads=args.threads)

    args.out.mkdir(parents=True, exist_ok=True)
    _write_parquet(table, args.out / GENE_TABLE_FILE)
    _write_parquet(go_terms, args.out / GO_TERMS_FILE)
    _write_parquet(annotation.aliases, args.out / ALIASES_FILE)
    save_embeddings_npz(args.out / EMBEDDINGS_FILE, embeddings, float16=True)
    provenance = {
        "genes": len(table),
        "go_terms": len(go_terms),
        "aliases": len(annotation.aliases),
        "text_template": TEXT_TEMPLATE_VERSION,
        "encoder": MODEL_NAME,
        "embedding_source": OFFLINE_SOURCE,
        "selection_seed": SELECTION_SEED,
        "debian_packages": list(DEBIAN_PACKAGES),
        "annotation_metadata": _metadata(annotation),
        "licences": {
            "NCBI Gene": "public domain (US government work), via org.Hs.eg.db",
            "Gene Ontology": "CC BY 4.0, via GO.db",
            "org.Hs.eg.db / GO.db": "Artistic-2.0 (Bioconductor)",
            "all-MiniLM-L6-v2": "Apache-2.0",
        },
        "example_text": texts[0],
    }
    atomic_write_text(args.out / PROVENANCE_FILE, json.dumps(provenance, indent=2) + "\n")
    # Atomic writes create private (0600) temporary files; package data must be world-readable.
    for name in (GENE_TABLE_FILE, GO_TERMS_FILE, ALIASES_FILE, EMBEDDINGS_FILE, PROVENANCE_FILE):
        (args.out / name).chmod(0o644)
    print(f"wrote {len(table)} genes to {args.out} in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
