"""Simulation presets: screen sizes plus the biological knobs of the generative model.

Sizes differ between presets; the response model (:class:`ResponseParams`) is shared so that the
``tiny`` test preset behaves like ``replogle-like`` in miniature. ``replogle-hetero`` adds a per-cell
basal state (:class:`StateParams`, ``states.py``) on which the response depends.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from ptrag.errors import ConfigError

__all__ = [
    "DEFAULT_SIMULATION",
    "PRESETS",
    "ResponseParams",
    "SimulationPreset",
    "StateParams",
    "get_preset",
]


@dataclass(frozen=True)
class ResponseParams:
    """How perturbations change expression (log fold change on the negative-binomial mean)."""

    knockdown_range: tuple[float, float] = (0.72, 0.93)  # fraction of the target's mean removed
    null_prob_complex: float = 0.12  # essential-complex members almost always have a phenotype
    null_prob_other: float = 0.4
    strength_sigma: float = 0.45  # log-normal spread of a perturbation's overall strength
    line_strength_sigma: float = 0.2
    go_program_weight: float = 1.0  # membership weight of GO-term programs, relative to complexes
    go_program_max_genes: int = 300  # GO terms bigger than this (in the table) are too generic
    responder_fraction: float = 0.05  # genes moved by one program, besides its own members
    program_effect_sd: float = 0.4
    member_effect: float = 0.35  # coherent shift of a program's own member genes
    program_line_correlation: float = 0.75  # shared vs line-specific part of a program's loading
    program_silent_prob: float = 0.15  # a program can be silent in a line
    program_gain_sigma: float = 0.3
    idio_fraction: float = 0.03  # genes moved by a perturbation's own idiosyncratic effect
    idio_effect_sd: float = 0.3
    idio_line_correlation: float = 0.5
    max_abs_lfc: float = 3.0
    escape_range: tuple[float, float] = (0.05, 0.25)  # fraction of cells with no response
    strength_shape: float = 6.0  # Gamma shape of the continuous per-cell response strength


@dataclass(frozen=True)
class StateParams:
    """A continuous basal state s in [0, 1] per cell, visible in its expression, that shapes its response.

    Every cell (control or perturbed) has s ~ Beta(a, a); a < 1 puts most cells near 0 or 1. A state
    program multiplies the mean of a few well-expressed genes by exp(L_g (s - 1/2)). A responding cell's
    strength is scaled by 1 + strength_slope (2s - 1) and its escape probability by
    1 + escape_slope (1 - 2s), so both depend on s and average to the condition's value. Gated programs
    respond in one state only (gain 2s or 2(1 - s)). ``twin_lines`` copy every downstream response and
    gate of their source line (full transfer); other lines redraw each gate with ``gate_redraw_prob``
    (partial transfer).
    """

    beta_shape: float = 0.5
    state_gene_fraction: float = 0.04  # share of measured genes in the state program
    state_effect: float = 1.0  # median |L_g|: log fold change between s = 0 and s = 1
    strength_slope: float = 0.5  # strength x 0.5 at s = 0, x 1.5 at s = 1
    escape_slope: float = 0.8  # escape probability x 1.8 at s = 0, x 0.2 at s = 1
    gated_program_fraction: float = 0.5  # half of these respond at high s only, half at low s only
    twin_lines: tuple[tuple[str, str], ...] = (("jurkat", "k562"),)  # (line, source of its responses)
    gate_redraw_prob: float = 0.5


@dataclass(frozen=True)
class SimulationPreset:
    """Everything that defines one simulated screen (with the seed)."""

    name: str
    cell_lines: tuple[str, ...]
    n_measured_genes: int
    n_perturbation_pool: int  # distinct targets across all lines
    n_perturbations_per_line: int
    complex_fraction: float  # share of targets drawn from shared complexes
    max_targets_per_complex: int
    n_go_programs: int
    measured_target_fraction: float  # share of targets that are also measured genes
    cells_per_perturbation: tuple[int, int]  # inclusive range
    control_fraction: float  # share of a line's cells that are non-targeting controls
    n_batches_per_line: int
    median_library_size: float  # UMIs over the measured genes
    library_size_sigma: float = 0.35
    baseline_sigma: float = 2.0  # log-normal spread of per-gene baseline expression
    line_baseline_sigma: float = 0.35
    dispersion_median: float = 5.0  # NB shape (theta); variance = mu + mu^2 / theta
    dispersion_sigma: float = 0.6
    batch_gene_sigma: float = 0.1
    batch_library_sigma: float = 0.1
    val_fraction: float = 0.15
    test_fraction: float = 0.25
    chunk_cells: int = 4_096  # cells per count chunk (and per random stream)
    store_counts: bool = True
    store_x: bool = True
    x_hvg_dtype: str = "float32"
    response: ResponseParams = field(default_factory=ResponseParams)
    state: StateParams | None = None  # per-cell basal state (replogle-hetero); None: responses ignore it

    def with_overrides(self, **changes: object) -> SimulationPreset:
        return replace(self, **changes)  # type: ignore[arg-type]


# The screen `ptrag simulate` and `ptrag benchmark` use unless told otherwise.
DEFAULT_SIMULATION = "replogle-like"

PRESETS: dict[str, SimulationPreset] = {
    "tiny": SimulationPreset(
        name="tiny",
        cell_lines=("k562", "rpe1"),
        n_measured_genes=300,
        n_perturbation_pool=44,
        n_perturbations_per_line=34,
        complex_fraction=0.55,
        max_targets_per_complex=6,
        n_go_programs=30,
        measured_target_fraction=0.6,
        cells_per_perturbation=(30, 40),
        control_fraction=0.12,
        n_batches_per_line=2,
        median_library_size=3_000.0,
        # With only 300 measured genes, effects touch a larger share of them so that a program still
        # moves a dozen or more genes (2,000-gene presets: 5%).
        response=ResponseParams(
            responder_fraction=0.1, idio_fraction=0.06, null_prob_other=0.35, program_effect_sd=0.5
        ),
    ),
    "replogle-like": SimulationPreset(
        name="replogle-like",
        cell_lines=("k562", "rpe1", "jurkat", "hepg2"),
        n_measured_genes=2_000,
        n_perturbation_pool=260,
        n_perturbations_per_line=160,
        complex_fraction=0.6,
        max_targets_per_complex=12,
        n_go_programs=150,
        measured_target_fraction=0.5,
        cells_per_perturbation=(40, 60),
        control_fraction=0.12,
        n_batches_per_line=4,
        median_library_size=10_000.0,
    ),
    # About 1M cells: 4 lines x 1,100 perturbations x ~200 cells + controls. X_hvg is float16 and
    # raw counts are not stored so the file stays manageable (see docs/simulation.md).
    "scale-1m": SimulationPreset(
        name="scale-1m",
        cell_lines=("k562", "rpe1", "jurkat", "hepg2"),
        n_measured_genes=2_000,
        n_perturbation_pool=1_600,
        n_perturbations_per_line=1_100,
        complex_fraction=0.35,
        max_targets_per_complex=40,
        n_go_programs=400,
        measured_target_fraction=0.4,
        cells_per_perturbation=(180, 220),
        control_fraction=0.12,
        n_batches_per_line=8,
        median_library_size=10_000.0,
        store_counts=False,
        x_hvg_dtype="float16",
    ),
}


# replogle-like's biology plus a per-cell basal state that the response depends on (StateParams); a
# little smaller so that a CPU model trains on it in minutes. Escape is commoner, so that where escapers
# sit (mostly at low s) matters.
PRESETS["replogle-hetero"] = replace(
    PRESETS["replogle-like"],
    name="replogle-hetero",
    n_perturbation_pool=200,
    n_perturbations_per_line=120,
    n_go_programs=120,
    response=replace(PRESETS["replogle-like"].response, escape_range=(0.1, 0.3)),
    state=StateParams(),
)
# tiny with the same basal state, for tests: jurkat is k562's twin, rpe1 transfers partly.
PRESETS["tiny-hetero"] = replace(
    PRESETS["tiny"],
    name="tiny-hetero",
    cell_lines=("k562", "rpe1", "jurkat"),
    response=replace(PRESETS["tiny"].response, escape_range=(0.1, 0.3)),
    state=StateParams(state_gene_fraction=0.08),  # 300 genes: a few more state genes to see it
)


def get_preset(preset: str | SimulationPreset) -> SimulationPreset:
    """Return a preset by name (or pass a :class:`SimulationPreset` through)."""
    if isinstance(preset, SimulationPreset):
        return preset
    if preset not in PRESETS:
        raise ConfigError(f"Unknown simulation preset {preset!r}. Choose one of: {', '.join(PRESETS)}.")
    return PRESETS[preset]
