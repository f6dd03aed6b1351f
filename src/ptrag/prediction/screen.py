"""In-silico screens: the predicted knockdown of many genes in one cell type, ranked by effect.

Every gene starts from the same control cells (one seeded draw from the cell type's pool), so
differences between genes come from the model alone, not from which controls each gene drew. The
model's output is reduced to a pseudobulk per gene as it is produced, so a genome-wide screen holds
one (genes × genes-measured) matrix, never every predicted cell (unless ``keep_cells``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

from ptrag.data.dataset import BATCH, PerturbationDataset
from ptrag.data.sets import CellSet, draw_controls
from ptrag.errors import DataError
from ptrag.io import atomic_path, h5ad_strings, staged_output
from ptrag.keys import UNS_KEY
from ptrag.prediction.core import forward_sets, predictor
from ptrag.prediction.effect_interval import (
    EFFECT_COLUMNS,
    calibrate_effect_interval,
    effect_columns,
    nearest_measured,
)
from ptrag.prediction.insilico import check_control_cell_types, sets_from_controls
from ptrag.prediction.predict import check_prediction_size, predicted_obs, to_anndata
from ptrag.retrieval.database import RetrievalDatabase
from ptrag.run.checkpoint import Checkpoint
from ptrag.run.vocabulary import screenable_genes

__all__ = ["ScreenResult", "check_low_evidence_cosine", "read_gene_list", "screen_bytes", "screen_genes"]

log = logging.getLogger(__name__)

TOP_RESPONDING_GENES = 5
# A query is low-evidence when no measured perturbation is as similar to it as 95 % of the measured
# perturbations are to their own nearest measured neighbour (unless it was measured itself).
LOW_EVIDENCE_QUANTILE = 0.05


@dataclass
class ScreenResult:
    """``table``: one row per gene, ranked by predicted effect; ``pseudobulk``: the same genes as
    an AnnData (X: predicted mean expression; layers["delta"]: minus the control mean); ``cells``:
    every predicted cell when asked for."""

    table: pd.DataFrame
    pseudobulk: ad.AnnData
    cells: ad.AnnData | None = None

    def write(self, out_dir: str | Path, overwrite: bool = False) -> Path:
        """screen.csv, screen_pseudobulk.h5ad, screen.png (+ screen_cells.h5ad); ``out_dir`` is
        replaced atomically."""
        with staged_output(out_dir, overwrite=overwrite) as staging:
            self.write_files(staging)
        return Path(out_dir)

    def write_files(self, directory: Path) -> None:
        from ptrag.prediction.screen_figure import write_screen_figure

        with atomic_path(directory / "screen.csv") as tmp:
            self.table.to_csv(tmp, index=False, float_format="%.6g")
        cutoff = float(self.pseudobulk.uns[UNS_KEY]["low_evidence_cosine"])
        write_screen_figure(self.table, directory / "screen.png", cutoff)
        with h5ad_strings():
            with atomic_path(directory / "screen_pseudobulk.h5ad") as tmp:
                self.pseudobulk.write_h5ad(tmp)
            if self.cells is not None:
                with atomic_path(directory / "screen_cells.h5ad") as tmp:
                    self.cells.write_h5ad(tmp)


def read_gene_list(value: str) -> list[str] | None:
    """``all`` → None (every gene with an embedding); a file (one symbol per line, ``#`` comments)
    or a comma-separated list → its symbols, in order, without duplicates."""
    if value.strip().lower() == "all":
        return None
    path = Path(value)
    if path.is_file():
        lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
        genes = [g for line in lines for g in line.replace(",", " ").split()]
        if not genes:
            raise DataError(f"The gene file {path} lists no genes (one symbol per line).")
    elif path.suffix in {".txt", ".csv", ".tsv"} or "/" in value:
        raise DataError(f"The gene file {value} does not exist; give a file, symbols like MYC,TP53, or all.")
    else:
        genes = [g.strip() for g in value.split(",") if g.strip()]
    return list(dict.fromkeys(genes))


def low_evidence_cutoff(database: RetrievalDatabase, quantile: float = LOW_EVIDENCE_QUANTILE) -> float:
    """The ``quantile`` of the measured perturbations' cosine to their own nearest measured one."""
    if len(database) < 2:
        return 1.0
    nearest = database.neighbours(database.perturbations, database.embeddings, 1)
    return float(np.quantile(nearest.cosine[:, 0], quantile))


def screen_bytes(n_screened: int, n_genes: int, kept_cells_per_gene: int = 0) -> int:
    """About the size of a screen's files: the pseudobulk's X and delta (and the kept cells), float32."""
    return n_screened * n_genes * 4 * (2 + kept_cells_per_gene)


def check_low_evidence_cosine(value: float | None) -> None:
    """A low-evidence cut-off is a cosine: a number in [-1, 1] (None: the default quantile)."""
    if value is not None and not -1.0 <= value <= 1.0:  # NaN fails the comparison too
        raise DataError(
            f"--low-evidence-cosine (low_evidence_cosine) must be a cosine between -1 and 1, got {value}."
        )


def _top_genes(delta: np.ndarray, genes: Sequence[str], n: int) -> list[str]:
    order = np.argsort(-np.abs(delta), axis=1)[:, :n]
    names = np.asarray(genes)
    return [";".join(f"{names[j]}:{delta[i, j]:+.3f}" for j in row) for i, row in enumerate(order)]


def _screen_sets(
    dataset: PerturbationDataset, cell_type: str, genes: Sequence[str], n_cells: int, set_len: int, seed: int
) -> list[CellSet]:
    """Sets of every gene over one shared control draw."""
    pool = dataset.conditions.controls(cell_type)
    cells = draw_controls(pool, n_cells, np.random.default_rng(seed))
    batches = dataset.obs[BATCH].astype(str).to_numpy()
    return [s for gene in genes for s in sets_from_controls(cell_type, gene, cells, set_len, batches)]


def screen_genes(
    checkpoint: Checkpoint,
    dataset: PerturbationDataset,
    cell_type: str,
    genes: Sequence[str] | str | None = None,
    *,
    n_cells: int | None = None,
    keep_cells: bool = False,
    low_evidence_cosine: float | None = None,
    seed: int = 0,
    progress: bool = True,
    intervals: bool = True,
) -> ScreenResult:
    """Predict the knockdown of each of ``genes`` (default: every gene with an embedding; a string
    is one gene) in ``cell_type`` from its control cells, and rank them by predicted effect size.

    ``effect_size`` is the L2 norm, over the model's genes, of the predicted pseudobulk minus the
    cell type's control mean (log1p units); ``n_cells`` predicted cells per gene (default: one set).
    ``expected_effect``: the effect a measurement would be expected to show, given the model's
    effect and how close the gene is to a measured perturbation, and ``effect_low`` /
    ``effect_high`` its 90 % interval, both calibrated on the run's validation groups in
    ``dataset`` (:mod:`ptrag.prediction.effect_interval`; NaN where the data holds none of them).
    Genes are ranked by ``expected_effect`` (by ``effect_size`` without calibration).
    """
    config = checkpoint.config
    set_len = config.train.cell_set_len
    n_cells = set_len if n_cells is None else n_cells
    if n_cells < 1:
        raise DataError(f"n_cells must be at least 1, got {n_cells}.")
    check_low_evidence_cosine(low_evidence_cosine)
    check_control_cell_types(dataset, [cell_type])
    if genes is None:
        genes = screenable_genes(config, checkpoint.spec.prior_tables)
    elif isinstance(genes, str):  # one symbol, not its letters
        genes = [genes]
    genes = list(dict.fromkeys(str(g) for g in genes))
    if not genes:
        raise DataError("No genes to screen.")
    run = predictor(checkpoint, dataset, genes, [cell_type])
    genes = run.embedded(genes, "gene(s)")
    n_genes = len(run.spec.genes)
    if keep_cells:
        check_prediction_size(
            len(genes) * n_cells,
            n_genes,
            f"Keeping {n_cells} cells for each of {len(genes)} genes",
            "screen fewer genes with --genes, or drop --cells for pseudobulk profiles only.",
        )

    sets = _screen_sets(run.dataset, cell_type, genes, n_cells, set_len, seed)
    sets_per_gene = len(sets) // len(genes)
    sums = np.zeros((len(genes), n_genes), dtype=np.float64)
    selected = np.zeros(len(genes), dtype=np.float64)  # kept (cell, candidate) share × real cells
    selects = False
    kept: list[np.ndarray] = []
    passes = forward_sets(run, sets, progress, f"screen {cell_type}", seed)
    for start, chunk, output in passes:
        values = output.predicted.numpy()
        n_real = np.array([s.n_real for s in chunk])
        real = np.arange(values.shape[1])[None, :] < n_real[:, None]
        gene_of = (start + np.arange(len(chunk))) // sets_per_gene
        np.add.at(sums, gene_of, (values * real[:, :, None]).sum(axis=1))
        if keep_cells:
            kept += [values[i, : s.n_real] for i, s in enumerate(chunk)]
        if output.selection is not None and output.candidates is not None:
            selects = True
            valid = output.candidates.valid.numpy()
            weights = output.selection.weights.numpy() * real[:, :, None] * valid[:, None, :]
            share = weights.sum(axis=(1, 2)) / np.maximum(n_real * valid.sum(axis=1), 1)
            np.add.at(selected, gene_of, share * n_real)

    # What every gene's cells are centred on before their response: the shared draw's anchor (the
    # pool mean, or under model.anchor = "batch_pool" the draw's batches' control means).
    draw = np.concatenate([s.control_idx[: s.n_real] for s in sets[:sets_per_gene]])
    control_mean = run.tensorize.anchor_means(cell_type, draw).astype(np.float64)
    pseudobulk = (sums / n_cells).astype(np.float32)
    delta = pseudobulk - control_mean[None, :].astype(np.float32)
    database = run.spec.database
    nearest, cosine = nearest_measured(run.spec, genes)
    measured = database.row_of(genes) >= 0
    cutoff = low_evidence_cutoff(database) if low_evidence_cosine is None else low_evidence_cosine
    table = pd.DataFrame(
        {
            "perturbation": genes,
            "cell_type": cell_type,
            "effect_size": np.linalg.norm(delta, axis=1),
            "top_genes": _top_genes(delta, run.spec.genes, TOP_RESPONDING_GENES),
            "measured_in_training": measured,
            "nearest_measured": nearest,
            "nearest_cosine": cosine,
            "low_evidence": ~measured & (cosine < cutoff),
        }
    )
    interval = calibrate_effect_interval(checkpoint, dataset, n_cells, seed) if intervals else None
    if intervals:
        columns = effect_columns(interval, table["effect_size"].to_numpy(), cosine)
        for position, (name, values) in enumerate(zip(EFFECT_COLUMNS, columns, strict=True), start=3):
            table.insert(position, name, values)
    if selects:  # share of retrieved candidates kept, over the gene's predicted cells
        table["selection_rate"] = selected / n_cells
    # Ranked by the best estimate of what a measurement would show: the evidence-calibrated effect.
    rank_by = "expected_effect" if interval is not None else "effect_size"
    order = np.argsort(-table[rank_by].to_numpy(), kind="stable")
    table = table.iloc[order].reset_index(drop=True)
    table.insert(0, "rank", np.arange(1, len(table) + 1))

    entries = {
        "cell_type": cell_type,
        "n_cells_per_gene": n_cells,
        "seed": seed,
        "low_evidence_cosine": cutoff,
        "effect_interval": {} if interval is None else asdict(interval),
        "control_mean": control_mean.astype(np.float32),
    }
    uns = run.metadata(None, **entries)
    obs = table.drop(columns="perturbation").set_index(table["perturbation"].astype(str))
    obs.index.name = None
    obs = obs.astype({"cell_type": "category", "nearest_measured": "category", "top_genes": "category"})
    bulk = ad.AnnData(X=pseudobulk[order], obs=obs)
    bulk.var_names = pd.Index(list(run.spec.genes))
    bulk.layers["delta"] = delta[order]
    bulk.uns[UNS_KEY] = uns
    cells = None
    if keep_cells:
        cell_obs = predicted_obs(run.dataset, sets)
        cell_obs.index = [f"pred_{i}" for i in range(len(cell_obs))]
        cells = to_anndata(np.vstack(kept), cell_obs, run.spec.genes, run.metadata("in_silico", **entries))
    return ScreenResult(table, bulk, cells)
