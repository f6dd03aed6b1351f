"""``simulate()``: write a simulated screen (data.h5ad, split.toml, split_unseen.toml, truth.parquet,
perturbations.csv)."""

from __future__ import annotations

import logging
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ptrag.io import atomic_path, atomic_save, prepare_output_dir
from ptrag.simulation.cells import STATE_COLUMN, EncodedChunk, design_cells, encode_chunk, sample_counts
from ptrag.simulation.expectation import true_shifts
from ptrag.simulation.genes import select_genes
from ptrag.simulation.model import ScreenModel, build_model
from ptrag.simulation.presets import SimulationPreset, get_preset
from ptrag.simulation.splitfile import fewshot_split, unseen_split
from ptrag.simulation.states import attach_states
from ptrag.simulation.writer import ChunkedH5adWriter

__all__ = [
    "CONDITIONS_FILE",
    "DATA_FILE",
    "REALISM_FILE",
    "SPLIT_FILE",
    "TRUTH_FILE",
    "UNSEEN_SPLIT_FILE",
    "SimulationResult",
    "build_screen_model",
    "simulate",
]

SIMULATOR_VERSION = "1"
DATA_FILE = "data.h5ad"
SPLIT_FILE = "split.toml"
UNSEEN_SPLIT_FILE = "split_unseen.toml"
TRUTH_FILE = "truth.parquet"
CONDITIONS_FILE = "perturbations.csv"
REALISM_FILE = "realism.json"
_STATE_STREAM = 3

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SimulationResult:
    """Where a simulated screen was written, and its size."""

    out_dir: Path
    data_path: Path
    split_path: Path
    unseen_split_path: Path
    truth_path: Path
    conditions_path: Path
    preset: SimulationPreset
    seed: int
    n_cells: int
    n_genes: int
    n_conditions: int
    seconds: float


def _uns(preset: SimulationPreset, seed: int) -> dict[str, object]:
    from ptrag import __version__

    out: dict[str, dict[str, object]] = {
        "ptrag_simulation": {
            "preset": preset.name,
            "seed": int(seed),
            "version": SIMULATOR_VERSION,
            "ptrag_version": __version__,
            "x_hvg": "obsm['X_hvg'] equals X (densified): var holds exactly the measured genes",
            "stored_counts": bool(preset.store_counts),
            "stored_x": bool(preset.store_x),
            "x_hvg_dtype": preset.x_hvg_dtype,
        }
    }
    if preset.state is not None:
        out["ptrag_simulation"]["state"] = (
            f"obs['{STATE_COLUMN}'] is each cell's true basal state s in [0, 1]; the response depends "
            "on it (docs/simulation.md). It is the truth, for oracles and tests: models must not read it."
        )
    return out


def _write_data(path: Path, model: ScreenModel, seed: int, progress: bool) -> int:
    from ptrag.progress import progress_bar

    rng = np.random.default_rng(np.random.SeedSequence([seed, 1]))
    design = design_cells(model, rng)
    preset = model.preset
    var = pd.DataFrame(index=pd.Index(model.selection.measured, name=None))
    var["highly_variable"] = True
    chunk = preset.chunk_cells
    starts = range(0, design.n_cells, chunk)

    def write(tmp: Path) -> None:
        with ChunkedH5adWriter(
            tmp, design.obs, var, _uns(preset, seed), preset.store_x, preset.store_counts, preset.x_hvg_dtype
        ) as writer:
            bar = progress_bar(total=design.n_cells, unit="cell", desc="simulating cells", enabled=progress)

            def sample(chunk_id: int, start: int) -> tuple[int, EncodedChunk]:
                stop = min(start + chunk, design.n_cells)
                return stop - start, encode_chunk(sample_counts(model, design, start, stop, seed, chunk_id))

            # Each chunk has its own random stream, so two are sampled at a time and written in order;
            # at most two chunks wait in memory.
            def write_oldest(pending: deque[Future[tuple[int, EncodedChunk]]]) -> None:
                n, encoded = pending.popleft().result()
                writer.append(*encoded)
                bar.update(n)

            with ThreadPoolExecutor(max_workers=2) as pool:
                pending: deque[Future[tuple[int, EncodedChunk]]] = deque()
                for chunk_id, start in enumerate(starts):
                    pending.append(pool.submit(sample, chunk_id, start))
                    if len(pending) == 2:
                        write_oldest(pending)
                while pending:
                    write_oldest(pending)
            bar.close()

    with atomic_path(path) as tmp:
        write(tmp)
    return design.n_cells


def _truth_frame(model: ScreenModel, shifts: np.ndarray) -> pd.DataFrame:
    keys = model.conditions[["cell_line", "perturbation"]].reset_index(drop=True)
    genes = pd.DataFrame(shifts, columns=list(model.selection.measured))
    return pd.concat([keys, genes], axis=1)


def build_screen_model(
    preset: str | SimulationPreset, seed: int, gene_table: pd.DataFrame | None = None
) -> ScreenModel:
    """The generative model of ``(preset, seed)``: what :func:`simulate` samples from (deterministic)."""
    spec = get_preset(preset)
    if gene_table is None:
        from ptrag.embeddings.bundled import load_gene_table

        gene_table = load_gene_table()
    genes_rng, model_rng, _ = (np.random.default_rng(s) for s in np.random.SeedSequence([seed, 0]).spawn(3))
    model = build_model(spec, select_genes(gene_table, spec, genes_rng), model_rng)
    if spec.state is not None:  # its own stream: the state-free presets' draws stay as they were
        model = attach_states(model, np.random.default_rng(np.random.SeedSequence([seed, _STATE_STREAM])))
    return model


def simulate(
    preset: str | SimulationPreset,
    seed: int,
    out_dir: str | Path,
    gene_table: pd.DataFrame | None = None,
    overwrite: bool = False,
    progress: bool = False,
) -> SimulationResult:
    """Simulate a CRISPRi screen and write it to ``out_dir``; deterministic for ``(preset, seed)``.

    ``gene_table`` defaults to the bundled table (``ptrag.embeddings.bundled.load_gene_table()``).
    """
    started = time.perf_counter()
    spec = get_preset(preset)
    out = prepare_output_dir(out_dir, overwrite=overwrite)
    model = build_screen_model(spec, seed, gene_table)
    selection = model.selection
    split_rng = np.random.default_rng(np.random.SeedSequence([seed, 0]).spawn(3)[2])

    uniform = np.full((len(spec.cell_lines), spec.n_batches_per_line), 1.0 / spec.n_batches_per_line)
    # The truth is deterministic arithmetic on the model, independent of the sampled cells: it is
    # computed on a second core while the cells are sampled (numpy releases the GIL for both).
    with ThreadPoolExecutor(max_workers=1) as pool:
        shifts = pool.submit(true_shifts, model, uniform)
        n_cells = _write_data(out / DATA_FILE, model, seed, progress)
        log.info("wrote %d cells x %d genes to %s", n_cells, len(selection.measured), out / DATA_FILE)
        truth = _truth_frame(model, shifts.result())
    atomic_save(out / TRUTH_FILE, lambda tmp: truth.to_parquet(tmp, index=False))

    split = fewshot_split(
        selection.line_targets, spec, split_rng, dataset_name="simulated", data_file=DATA_FILE
    )
    split.write(out / SPLIT_FILE)
    unseen = unseen_split(selection.line_targets, spec, seed, dataset_name="simulated", data_file=DATA_FILE)
    unseen.write(out / UNSEEN_SPLIT_FILE)
    conditions = model.conditions.copy()
    conditions["target_measured"] = conditions["target_measured_index"] >= 0
    keys = list(zip(conditions["cell_line"], conditions["perturbation"], strict=True))
    conditions["split"] = [split.role(c, p) for c, p in keys]
    conditions["split_unseen"] = [unseen.role(c, p) for c, p in keys]
    atomic_save(out / CONDITIONS_FILE, lambda tmp: conditions.to_csv(tmp, index=False))

    return SimulationResult(
        out_dir=out,
        data_path=out / DATA_FILE,
        split_path=out / SPLIT_FILE,
        unseen_split_path=out / UNSEEN_SPLIT_FILE,
        truth_path=out / TRUTH_FILE,
        conditions_path=out / CONDITIONS_FILE,
        preset=spec,
        seed=int(seed),
        n_cells=n_cells,
        n_genes=len(selection.measured),
        n_conditions=len(model.conditions),
        seconds=time.perf_counter() - started,
    )
