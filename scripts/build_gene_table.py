"""Regenerate the gene table, GO terms, aliases and embeddings bundled in ptrag.

    python scripts/build_gene_table.py [--annotation-dir DIR] [--threads 2] [--batch-size 64] [--out DIR]

Steps (all offline once the two Debian packages are cached):
1. Fetch r-bioc-org.hs.eg.db and r-bioc-go.db (apt-get download + dpkg-deb -x, cached in
   ~/.cache/ptrag/annotation) or read the SQLite files under --annotation-dir.
2. Take every protein-coding gene. Mark the ~5,000 the simulator draws from with a ``category``
   (``ptrag.embeddings.families``): every gene of 19 essential complexes/processes chosen by HGNC
   symbol pattern, 600 seeded "other" genes directly annotated to core essential processes with rich
   GO annotation, and seeded "background" genes with any GO annotation, up to 5,000.
3. Write texts with template ``TEXT_TEMPLATE_VERSION`` and encode them with all-MiniLM-L6-v2. A gene
   whose text is unchanged since the table already in --out keeps its stored vector bit for bit
   (re-encoding the same text in other batches only adds float noise), so only new texts are encoded.
4. Write gene_table.parquet, go_terms.parquet, gene_aliases.parquet, gene_embeddings.npz (float16) and
   PROVENANCE.json into src/ptrag/embeddings/resources/.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ptrag.embeddings.annotation import DEBIAN_PACKAGES, Annotation
from ptrag.embeddings.build import OFFLINE_SOURCE, save_embeddings_npz
from ptrag.embeddings.bundled import (
    ALIASES_FILE,
    EMBEDDINGS_FILE,
    GENE_TABLE_FILE,
    GO_TERMS_FILE,
    PROVENANCE_FILE,
    read_stored_matrix,
)
from ptrag.embeddings.encoder import MODEL_NAME, encode_texts
from ptrag.embeddings.families import SELECTION_SEED, select_bundled_genes
from ptrag.embeddings.text import TEXT_TEMPLATE_VERSION, texts_for_table
from ptrag.embeddings.types import GeneEmbeddings
from ptrag.io import atomic_save, atomic_write_text

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "src" / "ptrag" / "embeddings" / "resources"
COLUMNS = ["symbol", "entrez_id", "full_name", "go_ids", "category"]


def _metadata(annotation: Annotation) -> dict[str, str]:
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


def full_table(annotation: Annotation) -> pd.DataFrame:
    """Every protein-coding gene: the simulator's selection first (its order), then the rest by symbol."""
    genes = annotation.gene_go_ids()
    pairs = genes[["symbol", "go_ids"]].explode("go_ids").rename(columns={"go_ids": "go_id"}).dropna()
    selected = select_bundled_genes(genes, pairs)[COLUMNS]
    print(selected["category"].value_counts().to_string())
    rest = genes[~genes["symbol"].isin(set(selected["symbol"]))].sort_values("symbol").copy()
    rest["category"] = None
    return pd.concat([selected, rest[COLUMNS]], ignore_index=True)


def previous_vectors(out: Path) -> dict[str, np.ndarray]:
    """Text → stored float16 vector of the resources already in ``out`` (empty when there are none)."""
    paths = [out / name for name in (GENE_TABLE_FILE, GO_TERMS_FILE, EMBEDDINGS_FILE)]
    if not all(path.is_file() for path in paths):
        return {}
    table, terms = pd.read_parquet(paths[0]), pd.read_parquet(paths[1])
    symbols, matrix, template = read_stored_matrix(paths[2])
    if template != TEXT_TEMPLATE_VERSION or tuple(table["symbol"]) != symbols:
        return {}
    texts = texts_for_table(zip(table["symbol"], table["full_name"], table["go_ids"], strict=True), terms)
    return dict(zip(texts, matrix, strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--annotation-dir", help="Directory holding org.Hs.eg.sqlite and GO.sqlite.")
    parser.add_argument("--threads", type=int, default=2, help="Torch threads for the encoder (default 2).")
    parser.add_argument("--batch-size", type=int, default=64, help="Texts encoded per batch (default 64).")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="Where to write the resources.")
    parser.add_argument(
        "--reencode", action="store_true", help="Encode every text, even those already in --out."
    )
    args = parser.parse_args()

    started = time.perf_counter()
    annotation = Annotation.open(args.annotation_dir)
    table = full_table(annotation)
    used = {go_id for ids in table["go_ids"] for go_id in ids}
    go_terms = annotation.go_terms[annotation.go_terms["go_id"].isin(used)].reset_index(drop=True)
    texts = texts_for_table(zip(table["symbol"], table["full_name"], table["go_ids"], strict=True), go_terms)

    known = {} if args.reencode else previous_vectors(args.out)
    todo = list(dict.fromkeys(text for text in texts if text not in known))
    print(f"{len(table)} genes: {len(texts) - len(todo)} vectors kept from {args.out}, {len(todo)} to encode")
    encode_started = time.perf_counter()
    if todo:
        fresh = encode_texts(todo, threads=args.threads, batch_size=args.batch_size)
        known.update(zip(todo, fresh.astype(np.float16), strict=True))
    encode_seconds = time.perf_counter() - encode_started
    # float16 → float32 is exact, so kept vectors are written back unchanged.
    matrix = np.stack([known[text] for text in texts]).astype(np.float32)
    embeddings = GeneEmbeddings(
        symbols=tuple(table["symbol"]),
        matrix=matrix,
        source=OFFLINE_SOURCE,
        text_template=TEXT_TEMPLATE_VERSION,
    )

    args.out.mkdir(parents=True, exist_ok=True)
    _write_parquet(table, args.out / GENE_TABLE_FILE)
    _write_parquet(go_terms, args.out / GO_TERMS_FILE)
    _write_parquet(annotation.aliases, args.out / ALIASES_FILE)
    save_embeddings_npz(args.out / EMBEDDINGS_FILE, embeddings, float16=True)
    provenance = {
        "genes": len(table),
        "simulator_genes": int(table["category"].notna().sum()),
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
    files = (GENE_TABLE_FILE, GO_TERMS_FILE, ALIASES_FILE, EMBEDDINGS_FILE, PROVENANCE_FILE)
    for name in files:
        (args.out / name).chmod(0o644)
    megabytes = sum((args.out / name).stat().st_size for name in files) / 1e6
    print(
        f"wrote {len(table)} genes ({megabytes:.1f} MB) to {args.out} in "
        f"{time.perf_counter() - started:.0f} s ({encode_seconds:.0f} s encoding {len(todo)} texts "
        f"with {args.threads} thread(s))"
    )


if __name__ == "__main__":
    main()
