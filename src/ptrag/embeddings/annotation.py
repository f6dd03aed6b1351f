"""Real human gene annotation from Bioconductor's org.Hs.eg.db and GO.db, as Debian packages them.

Debian ships both Bioconductor annotation packages (``r-bioc-org.hs.eg.db``, ``r-bioc-go.db``) with
their SQLite databases inside. ptrag fetches them with ``apt-get download`` (no installation, no R),
unpacks them with ``dpkg-deb -x`` into a cache directory and reads the SQLite files directly:

- ``org.Hs.eg.sqlite``: ``genes`` (Entrez id), ``gene_info`` (symbol, full name), ``genetype``,
  ``alias`` and the direct GO annotations ``go_bp`` / ``go_mf`` / ``go_cc``. Data from NCBI Gene.
- ``GO.sqlite``: ``go_term`` (GO id, term name, ontology). Data from the Gene Ontology.

Users on air-gapped machines can pass a directory holding the two SQLite files (or the extracted
packages) instead; nothing is then downloaded.
"""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3
import subprocess
import tempfile
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import pandas as pd

from ptrag.errors import EmbeddingError

__all__ = ["CACHE_ENV_VAR", "DEBIAN_PACKAGES", "Annotation"]

logger = logging.getLogger(__name__)

DEBIAN_PACKAGES: tuple[str, ...] = ("r-bioc-org.hs.eg.db", "r-bioc-go.db")
ORG_DB_FILE = "org.Hs.eg.sqlite"
GO_DB_FILE = "GO.sqlite"
CACHE_ENV_VAR = "PTRAG_ANNOTATION_CACHE"
ONTOLOGIES: tuple[str, ...] = ("BP", "MF", "CC")
# Root terms carry no information ("biological_process" with evidence ND means "unknown").
ROOT_GO_IDS: frozenset[str] = frozenset({"GO:0008150", "GO:0003674", "GO:0005575"})


def default_cache_dir() -> Path:
    """``$PTRAG_ANNOTATION_CACHE`` if set, else ``~/.cache/ptrag/annotation``."""
    override = os.environ.get(CACHE_ENV_VAR)
    if override:
        return Path(override).expanduser()
    return Path.home() / ".cache" / "ptrag" / "annotation"


def _find_file(root: Path, name: str) -> Path | None:
    if (root / name).is_file():
        return root / name
    matches = sorted(root.rglob(name))
    return matches[0] if matches else None


def _run(command: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)
    except FileNotFoundError as exc:
        raise EmbeddingError(
            f"`{command[0]}` is not available on this machine, so the Debian annotation packages "
            f"({', '.join(DEBIAN_PACKAGES)}) cannot be fetched. Extract {ORG_DB_FILE} and {GO_DB_FILE} "
            "elsewhere and pass their directory with --annotation-dir, or use the bundled embeddings."
        ) from exc


def _download_debs(deb_dir: Path) -> list[Path]:
    deb_dir.mkdir(parents=True, exist_ok=True)
    result = _run(["apt-get", "download", *DEBIAN_PACKAGES], deb_dir)
    if result.returncode != 0:
        # A fresh container has no package lists yet; refresh them once and retry.
        logger.info("apt-get download failed (%s); running apt-get update once", result.stderr.strip()[:200])
        _run(["apt-get", "update"], deb_dir)
        result = _run(["apt-get", "download", *DEBIAN_PACKAGES], deb_dir)
    if result.returncode != 0:
        raise EmbeddingError(
            f"`apt-get download {' '.join(DEBIAN_PACKAGES)}` failed in {deb_dir}: "
            f"{result.stderr.strip()[-500:]}. Check network access to the Debian archive, or extract "
            f"{ORG_DB_FILE} and {GO_DB_FILE} elsewhere and pass --annotation-dir."
        )
    debs = sorted(deb_dir.glob("*.deb"))
    missing = [p for p in DEBIAN_PACKAGES if not any(d.name.startswith(p + "_") for d in debs)]
    if missing:
        raise EmbeddingError(f"apt-get download did not produce packages {missing} in {deb_dir}.")
    return debs


def _extract(debs: list[Path], target: Path) -> None:
    # Extract into a private temporary sibling and rename it into place, so an interrupted run never
    # leaves a half-filled cache and two processes filling the cache at once do not collide.
    partial = Path(tempfile.mkdtemp(prefix=".extracting-", dir=target.parent))
    try:
        for deb in debs:
            result = _run(["dpkg-deb", "-x", str(deb), str(partial)], partial)
            if result.returncode != 0:
                raise EmbeddingError(f"`dpkg-deb -x {deb}` failed: {result.stderr.strip()[-500:]}")
        try:
            partial.rename(target)
        except OSError:
            if not target.is_dir():  # another process won the race when the target now exists
                raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)


def _fill_cache(cache: Path, extracted: Path) -> None:
    logger.info("Fetching %s into %s", ", ".join(DEBIAN_PACKAGES), cache)
    try:
        cache.mkdir(parents=True, exist_ok=True)
        download_dir = Path(tempfile.mkdtemp(prefix=".debs-", dir=cache))
    except OSError as exc:
        raise EmbeddingError(
            f"Cannot create the annotation cache {cache}: {exc}. Set ${CACHE_ENV_VAR}."
        ) from exc
    try:
        _extract(_download_debs(download_dir), extracted)
    finally:
        # The .deb files (~50 MB) are not needed once extracted.
        shutil.rmtree(download_dir, ignore_errors=True)


def locate_annotation(annotation_dir: str | Path | None = None, download: bool = True) -> tuple[Path, Path]:
    """Return the paths of ``org.Hs.eg.sqlite`` and ``GO.sqlite``.

    ``annotation_dir`` given: the files are searched below it, nothing is downloaded. Otherwise the
    default cache is used and filled with ``apt-get download`` + ``dpkg-deb -x`` when empty.
    """
    if annotation_dir is not None:
        root = Path(annotation_dir).expanduser()
        if not root.is_dir():
            raise EmbeddingError(f"Annotation directory {root} does not exist.")
        org, go = _find_file(root, ORG_DB_FILE), _find_file(root, GO_DB_FILE)
        if org is None or go is None:
            absent = [n for n, p in ((ORG_DB_FILE, org), (GO_DB_FILE, go)) if p is None]
            raise EmbeddingError(
                f"{root} does not contain {' or '.join(absent)}. Point --annotation-dir at the files "
                f"extracted from the Debian packages {', '.join(DEBIAN_PACKAGES)} (dpkg-deb -x)."
            )
        return org, go
    cache = default_cache_dir()
    extracted = cache / "extracted"
    if extracted.is_dir():
        org, go = _find_file(extracted, ORG_DB_FILE), _find_file(extracted, GO_DB_FILE)
        if org is not None and go is not None:
            return org, go
    if not download:
        raise EmbeddingError(
            f"No annotation cache at {extracted}. Run `ptrag embed-genes` once with network access, "
            "or pass --annotation-dir."
        )
    _fill_cache(cache, extracted)
    org, go = _find_file(extracted, ORG_DB_FILE), _find_file(extracted, GO_DB_FILE)
    if org is None or go is None:
        raise EmbeddingError(f"The extracted packages in {extracted} hold no {ORG_DB_FILE} / {GO_DB_FILE}.")
    return org, go


def _connect(path: Path) -> sqlite3.Connection:
    # immutable=1: no locking and no journal, so a read-only cache or file system works.
    try:
        connection = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)
        connection.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
    except sqlite3.DatabaseError as exc:
        raise EmbeddingError(
            f"{path} is not a readable SQLite database ({exc}). Delete it and retry."
        ) from exc
    return connection


@dataclass
class Annotation:
    """Read-only view of org.Hs.eg.db + GO.db as pandas tables."""

    org_path: Path
    go_path: Path

    @classmethod
    def open(cls, annotation_dir: str | Path | None = None, download: bool = True) -> Annotation:
        org, go = locate_annotation(annotation_dir, download=download)
        return cls(org_path=org, go_path=go)

    def _query(self, path: Path, sql: str) -> pd.DataFrame:
        connection = _connect(path)
        try:
            return pd.read_sql_query(sql, connection)
        except (sqlite3.DatabaseError, pd.errors.DatabaseError) as exc:
            raise EmbeddingError(f"Unexpected schema in {path}: {exc}") from exc
        finally:
            connection.close()

    @cached_property
    def genes(self) -> pd.DataFrame:
        """One row per Entrez gene: ``_id``, ``entrez_id``, ``symbol``, ``full_name``, ``gene_type``."""
        return self._query(
            self.org_path,
            "SELECT g._id AS _id, g.gene_id AS entrez_id, i.symbol AS symbol, i.gene_name AS full_name, "
            "t.gene_type AS gene_type FROM genes g JOIN gene_info i ON g._id = i._id "
            "LEFT JOIN genetype t ON g._id = t._id ORDER BY g._id",
        )

    @cached_property
    def protein_coding(self) -> pd.DataFrame:
        coding = self.genes[self.genes["gene_type"] == "protein-coding"]
        return coding.drop_duplicates("symbol").reset_index(drop=True)

    @cached_property
    def go_annotations(self) -> pd.DataFrame:
        """Direct (not propagated) GO annotations: ``_id``, ``go_id``, ``ontology``, one row per pair."""
        frames = []
        for ontology in ONTOLOGIES:
            frame = self._query(self.org_path, f"SELECT DISTINCT _id, go_id FROM go_{ontology.lower()}")
            frame["ontology"] = ontology
            frames.append(frame)
        annotations = pd.concat(frames, ignore_index=True)
        return annotations[~annotations["go_id"].isin(ROOT_GO_IDS)].reset_index(drop=True)

    @cached_property
    def go_terms(self) -> pd.DataFrame:
        """``go_id``, ``name``, ``ontology`` and ``n_genes``: protein-coding genes directly annotated.

        ``n_genes`` measures how specific a term is; texts list the most specific terms first.
        """
        terms = self._query(self.go_path, "SELECT go_id, term AS name, ontology FROM go_term")
        terms = terms[terms["ontology"].isin(ONTOLOGIES)]
        coding_ids = set(self.protein_coding["_id"])
        annotated = self.go_annotations[self.go_annotations["_id"].isin(coding_ids)]
        counts = annotated.groupby("go_id")["_id"].nunique().rename("n_genes")
        terms = terms.merge(counts, left_on="go_id", right_index=True, how="left")
        terms["n_genes"] = terms["n_genes"].fillna(0).astype("int64")
        return terms.sort_values("go_id").reset_index(drop=True)

    @cached_property
    def aliases(self) -> pd.DataFrame:
        """``alias`` → ``symbol`` for protein-coding genes (an alias may name several genes)."""
        alias = self._query(self.org_path, "SELECT _id, alias_symbol AS alias FROM alias")
        merged = alias.merge(self.protein_coding[["_id", "symbol"]], on="_id")
        merged = merged[merged["alias"] != merged["symbol"]]
        return (
            merged[["alias", "symbol"]]
            .drop_duplicates()
            .sort_values(["alias", "symbol"])
            .reset_index(drop=True)
        )

    def gene_go_ids(self, symbols: list[str] | None = None) -> pd.DataFrame:
        """Per protein-coding gene: ``symbol``, ``entrez_id``, ``full_name``, ``go_ids`` (sorted list)."""
        coding = self.protein_coding
        if symbols is not None:
            coding = coding[coding["symbol"].isin(set(symbols))]
        annotated = self.go_annotations[self.go_annotations["_id"].isin(set(coding["_id"]))]
        known_terms = set(self.go_terms["go_id"])
        annotated = annotated[annotated["go_id"].isin(known_terms)]
        grouped = annotated.groupby("_id")["go_id"].apply(lambda ids: sorted(set(ids)))
        table = coding[["_id", "symbol", "entrez_id", "full_name"]].copy()
        table["go_ids"] = [grouped.get(i, []) for i in table["_id"]]
        return table.drop(columns="_id").reset_index(drop=True)
