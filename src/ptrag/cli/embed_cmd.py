"""``ptrag embed-genes``: build GenePT-style gene embeddings offline, or show a gene's neighbours."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ptrag.cli.common import add_progress_option
from ptrag.keys import BUNDLED_SOURCE

__all__ = ["DESCRIPTION", "add_parser", "run"]

if TYPE_CHECKING:
    from ptrag.embeddings import GeneEmbeddings

DESCRIPTION = """\
Write GenePT-style gene embeddings offline, or show a gene's nearest neighbours.

Each gene is described as "Gene SYMBOL. Full name. Biological process: ...; Molecular function: ...;
Cellular component: ..." from NCBI Gene and Gene Ontology annotation (Bioconductor's org.Hs.eg.db and
GO.db) and encoded with all-MiniLM-L6-v2 into L2-normalised 384-d vectors. ptrag ships these vectors
for every human protein-coding gene, so --genes, --data and --all need no network: only genes the
shipped table lacks (named in a message) are built, from the annotation packages (fetched with
apt-get download + dpkg-deb -x into ~/.cache/ptrag/annotation, or read from --annotation-dir) and
the bundled encoder. --from-annotation builds every gene that way. The .npz output holds symbols,
matrix, texts, the text-template version and the source; load it anywhere ptrag takes embeddings.

Examples:
  ptrag embed-genes --data screen.h5ad --out genes.npz
  ptrag embed-genes --genes my_genes.txt --threads 1 --out genes.npz
  ptrag embed-genes --neighbors RPL7 -k 10
  ptrag embed-genes --neighbors TP53 --embeddings GenePT_gene_embedding_ada_text.pickle
  ptrag embed-genes --coverage --data screen.h5ad --embeddings GenePT_gene_embedding_ada_text.pickle
"""

CONTROL_HINTS = ("non-targeting", "control", "ctrl", "NT")
HEADER_WORDS = frozenset({"symbol", "symbols", "gene", "genes", "gene_symbol", "gene_name"})


def add_parser(sub: Any, name: str, help_text: str) -> None:
    parser = sub.add_parser(
        name, help=help_text, description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--genes", type=Path, metavar="FILE", help="text file with one gene symbol per line.")
    what.add_argument(
        "--data",
        type=Path,
        metavar="DATA.h5ad",
        help="embed the perturbation targets of this screen (control label excluded).",
    )
    what.add_argument("--all", action="store_true", help="write all ~20,600 human protein-coding genes.")
    what.add_argument(
        "--neighbors",
        metavar="SYMBOL",
        help="print the genes nearest to SYMBOL by cosine instead of building.",
    )
    parser.add_argument("--out", type=Path, metavar="FILE.npz", help="where to write the embeddings (.npz).")
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists.")
    parser.add_argument(
        "--annotation-dir",
        type=Path,
        metavar="DIR",
        help="directory holding org.Hs.eg.sqlite and GO.sqlite (nothing is downloaded), for genes the "
        "shipped table lacks or with --from-annotation. Default: the cache ~/.cache/ptrag/annotation, "
        "filled with apt-get on first use.",
    )
    parser.add_argument(
        "--from-annotation",
        action="store_true",
        help="build every gene from the annotation (e.g. a newer --annotation-dir) instead of taking "
        "the shipped vectors.",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads for the encoder (default: 2, or 1 when the cores are already busy, "
        "where 1 thread measured faster).",
    )
    parser.add_argument("--batch-size", type=int, default=64, help="texts encoded per batch (default 64).")
    parser.add_argument("--no-cache", action="store_true", help="do not read or update the embedding cache.")
    parser.add_argument(
        "--skip-unknown",
        action="store_true",
        help="leave out, with a warning, genes that are not protein-coding symbols or aliases "
        "(default: fail and list them).",
    )
    parser.add_argument(
        "--perturbation-column", help="with --data: obs column of the target gene (detected)."
    )
    parser.add_argument("--control-label", help="with --data: label of control cells (detected).")
    parser.add_argument(
        "--coverage",
        action="store_true",
        help="with --genes or --data: do not build; report which genes --embeddings covers "
        "(exact, case-insensitive, via alias) and list the missing ones.",
    )
    parser.add_argument(
        "-k", type=int, default=10, help="with --neighbors: how many neighbours (default 10)."
    )
    parser.add_argument(
        "--embeddings",
        default=BUNDLED_SOURCE,
        metavar="SOURCE",
        help="with --neighbors or --coverage: 'bundled' (default) or an embedding file "
        "(.npz, .pkl, .csv, .tsv, .parquet, .pt).",
    )
    parser.add_argument(
        "--prior",
        choices=("text", "go"),
        default="text",
        help="with --neighbors or --coverage: the gene prior to look in — 'text' (--embeddings) or "
        "'go' (the GO annotation graph; ptrag.embeddings.priors). The coexpression prior comes from a "
        "screen's control cells and lives in a trained run.",
    )
    add_progress_option(parser)
    parser.set_defaults(func=run)


def read_gene_file(path: Path) -> list[str]:
    """Symbols from a text file: one per line (first field of CSV/TSV lines); '#' starts a comment and
    a first line such as ``symbol`` or ``gene`` is taken as a header."""
    from ptrag.errors import EmbeddingError

    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise EmbeddingError(f"Cannot read the gene list {path}: {exc}") from exc
    genes = []
    for line in lines:
        field = line.split("#", 1)[0].replace("\t", ",").split(",", 1)[0].strip().strip('"')
        if field:
            genes.append(field)
    if genes and genes[0].lower() in HEADER_WORDS:
        genes = genes[1:]
    if not genes:
        raise EmbeddingError(f"The gene list {path} holds no gene symbols (one per line expected).")
    return list(dict.fromkeys(genes))


def perturbation_targets(path: Path, column: str | None, control_label: str | None) -> list[str]:
    """The distinct perturbation labels of a screen, without the control label; reads obs only."""
    from ptrag.data import columns as cols
    from ptrag.data.readers import open_screen

    with open_screen(path) as reader:
        name = cols.choose_column(
            "perturbation",
            column,
            cols.PERTURBATION_ALIASES,
            reader.obs_columns(),
            "--perturbation-column",
            read=reader.obs_column,
            cell_names=reader.cell_names(),
        )
        labels = reader.obs_column(str(name)).dropna().astype(str)
    control = cols.choose_control_label(control_label, labels, str(name))
    return sorted(set(labels) - {control})


def _prior_table(args: argparse.Namespace) -> GeneEmbeddings:
    from ptrag.embeddings.priors import load_prior_tables

    return load_prior_tables([args.prior], args.embeddings)[args.prior]


def _print_neighbors(args: argparse.Namespace) -> int:
    from ptrag.embeddings import resolve_genes
    from ptrag.errors import EmbeddingError

    if args.k < 1:
        raise EmbeddingError(f"-k must be at least 1, got {args.k}.")
    embeddings = _prior_table(args)
    resolution = resolve_genes(embeddings, [args.neighbors], policy="error")
    symbol = resolution.matched[args.neighbors]
    names: dict[str, str] = {}
    if args.embeddings == BUNDLED_SOURCE or args.prior == "go":
        from ptrag.embeddings.bundled import load_all_genes

        table = load_all_genes()
        names = dict(zip(table["symbol"], table["full_name"], strict=True))
    shown = symbol if symbol == args.neighbors else f"{symbol} (for {args.neighbors})"
    print(f"Nearest genes to {shown} in {embeddings.source} ({len(embeddings)} genes, {embeddings.dim}-d):")
    print(f"{'rank':>4}  {'gene':<12} {'cosine':>7}  name")
    for rank, (gene, cosine) in enumerate(embeddings.cosine_neighbors(symbol, args.k), start=1):
        print(f"{rank:>4}  {gene:<12} {cosine:>7.3f}  {names.get(gene, '')}")
    return 0


def _requested_genes(args: argparse.Namespace) -> list[str] | None:
    if args.genes is not None:
        return read_gene_file(args.genes)
    if args.data is not None:
        symbols = perturbation_targets(args.data, args.perturbation_column, args.control_label)
        print(f"{len(symbols)} perturbation targets in {args.data}")
        return symbols
    return None


def _print_coverage(args: argparse.Namespace) -> int:
    from ptrag.embeddings.resolve import resolve_quietly
    from ptrag.errors import EmbeddingError

    genes = _requested_genes(args)
    if genes is None:
        raise EmbeddingError("--coverage needs --genes FILE or --data DATA.h5ad.")
    embeddings = _prior_table(args)
    resolution = resolve_quietly(embeddings, genes)  # the summary below lists the missing genes
    print(resolution.summary())
    renamed = {gene: symbol for gene, symbol in resolution.matched.items() if gene != symbol}
    if renamed:
        shown = ", ".join(f"{gene}→{symbol}" for gene, symbol in list(renamed.items())[:20])
        print(f"matched under another name: {shown}" + (" …" if len(renamed) > 20 else ""))
    return 0


def run(args: argparse.Namespace) -> int:
    from ptrag.errors import EmbeddingError, OutputError

    if args.neighbors is not None:
        return _print_neighbors(args)
    if args.coverage:
        return _print_coverage(args)
    if args.out is None:
        raise EmbeddingError("Building embeddings needs --out FILE.npz (or use --neighbors SYMBOL).")
    if args.out.suffix.lower() != ".npz":
        raise EmbeddingError(f"--out must end in .npz, got {args.out}.")
    if args.out.exists() and not args.overwrite:
        raise OutputError(
            f"{args.out} already exists. Pass --overwrite to replace it, or choose another --out."
        )
    if args.batch_size < 1:
        raise EmbeddingError(f"--batch-size must be at least 1, got {args.batch_size}.")

    from ptrag.embeddings.build import EncodeOptions, embed_genes, save_embeddings_npz

    started = time.perf_counter()
    symbols = _requested_genes(args)
    options = EncodeOptions(threads=args.threads, batch_size=args.batch_size, use_cache=not args.no_cache)
    embeddings, texts, built = embed_genes(
        symbols,
        annotation_dir=args.annotation_dir,
        from_annotation=args.from_annotation,
        skip_unknown=args.skip_unknown,
        options=options,
    )
    save_embeddings_npz(args.out, embeddings, texts=texts)
    if symbols is not None:
        print(f"{len(embeddings)} of {len(set(symbols))} genes have an embedding")
    origin = f"{len(embeddings) - len(built)} from the shipped table, {len(built)} built from the annotation"
    seconds = time.perf_counter() - started
    print(f"Wrote {len(embeddings)} genes × {embeddings.dim} ({origin}) to {args.out} in {seconds:.1f} s")
    return 0
