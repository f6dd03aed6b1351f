"""How far a screen's predicted effect size can be trusted: a split-conformal interval per gene.

A run's validation groups were held out of training, and their effects were measured. Predicting
them exactly as a screen predicts any gene (one shared control draw per cell type, the same number
of cells) gives pairs (predicted effect ê, observed effect e), effect = L2 norm of the pseudobulk
minus the cell type's control mean. A measured group mean carries sampling noise that alone has a
norm of ~3 log1p units over 2,000 genes and 50 cells, more than most effects; so e is the unbiased
estimate sqrt(max(‖ŝ‖² − Σ_g var_g, 0)), ŝ the measured shift and var_g the sampling variance of
its gene g (group and control variances over their cell counts).

The log ratios r = log(e / ê) are the calibration scores. The 90 % interval of a new gene is
[ê · exp(r_(lo)), ê · exp(r_(hi))] with the order statistics lo = ⌊(n + 1) · 0.05⌋ and
hi = ⌈(n + 1) · 0.95⌉ (split conformal, equal tails; an index outside 1..n leaves that side
unbounded). The coverage guarantee holds for genes exchangeable with the validation groups: for a
screen, its never-measured genes are most like the validation genes of an unseen split. Coverage
on held-out genes is measured by ``benchmarks/screen_effects.py``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ptrag.errors import format_list

__all__ = [
    "EFFECT_COLUMNS",
    "EffectInterval",
    "calibrate_effect_interval",
    "effect_columns",
    "nearest_measured",
    "observed_effects",
]

if TYPE_CHECKING:
    from ptrag.data.dataset import PerturbationDataset
    from ptrag.run.checkpoint import Checkpoint
    from ptrag.run.spec import ModelSpec

log = logging.getLogger(__name__)

INTERVAL_LEVEL = 0.9
EFFECT_COLUMNS: tuple[str, ...] = ("expected_effect", "effect_low", "effect_high")
MIN_EFFECT = 1e-6
# Below this many validation groups the expected effect is the model's own (no regression fitted).
MIN_REGRESSION_GROUPS = 20
CROSS_FIT_FOLDS = 5


def _conformal_bounds(scores: np.ndarray, level: float) -> tuple[float, float]:
    """Equal-tailed split-conformal order statistics of ``scores`` (±inf where too few)."""
    scores = np.sort(scores)
    n, tail = len(scores), (1.0 - level) / 2.0
    # The 1e-9 keeps (19 + 1) · 0.05 at 1 despite 0.1 / 2 being 0.04999… in floating point.
    low_index = math.floor((n + 1) * tail + 1e-9)
    high_index = math.ceil((n + 1) * (1.0 - tail) - 1e-9)
    log_low = float(scores[low_index - 1]) if low_index >= 1 else -math.inf
    log_high = float(scores[high_index - 1]) if high_index <= n else math.inf
    return log_low, log_high


def _median_fit(design: np.ndarray, target: np.ndarray) -> np.ndarray:
    from statsmodels.regression.quantile_regression import QuantReg

    return np.asarray(QuantReg(target, design).fit(q=0.5).params, dtype=float)


def _design(predicted: np.ndarray, cosine: np.ndarray) -> np.ndarray:
    return np.column_stack([np.ones(len(predicted)), np.log(predicted), cosine])


@dataclass(frozen=True)
class EffectInterval:
    """The expected measured effect of a gene given the model's effect and its evidence, and
    multiplicative bounds around it, from ``n_groups`` validation groups.

    expected = exp(intercept + effect_slope · log(model effect) + cosine_slope · nearest cosine): a
    median regression on the validation groups, so genes far from every measured perturbation
    shrink when validation says their effects are over-predicted. Fewer than
    ``MIN_REGRESSION_GROUPS`` groups: expected = the model's effect.
    """

    level: float
    log_low: float  # -inf: no lower bound from this few groups
    log_high: float  # +inf: no upper bound
    n_groups: int
    intercept: float = 0.0
    effect_slope: float = 1.0
    cosine_slope: float = 0.0

    @classmethod
    def fit(
        cls,
        predicted: np.ndarray,
        observed: np.ndarray,
        cosine: np.ndarray | None = None,
        level: float = INTERVAL_LEVEL,
    ) -> EffectInterval:
        """Fit from paired model and observed effects (> 0) and the genes' nearest cosines.

        The conformal scores are out-of-fold residuals (``CROSS_FIT_FOLDS`` folds), so that the
        regression's fit to the validation groups does not narrow the interval.
        """
        predicted = np.maximum(np.asarray(predicted, float), MIN_EFFECT)
        observed = np.maximum(np.asarray(observed, float), MIN_EFFECT)
        target = np.log(observed)
        if cosine is None or len(target) < MIN_REGRESSION_GROUPS:
            return cls(level, *_conformal_bounds(target - np.log(predicted), level), len(target))
        design = _design(predicted, np.asarray(cosine, float))
        residuals = np.empty(len(target))
        folds = np.arange(len(target)) % CROSS_FIT_FOLDS
        for fold in range(CROSS_FIT_FOLDS):
            held = folds == fold
            residuals[held] = target[held] - design[held] @ _median_fit(design[~held], target[~held])
        intercept, effect_slope, cosine_slope = _median_fit(design, target)
        return cls(
            level, *_conformal_bounds(residuals, level), len(target), intercept, effect_slope, cosine_slope
        )

    def expected(self, effect: np.ndarray, cosine: np.ndarray) -> np.ndarray:
        """The expected measured effect of genes with model effects ``effect`` and nearest cosines."""
        log_effect = np.log(np.maximum(np.asarray(effect, dtype=float), MIN_EFFECT))
        evidence = self.cosine_slope * np.asarray(cosine, dtype=float)
        return np.exp(self.intercept + self.effect_slope * log_effect + evidence)

    def bounds(self, effect: np.ndarray, cosine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        expected = self.expected(effect, cosine)
        return expected * math.exp(self.log_low), expected * math.exp(self.log_high)

    @classmethod
    def from_state(cls, state: dict[str, float]) -> EffectInterval | None:
        """The interval a screen stored in ``uns["ptrag"]["effect_interval"]`` (None when empty)."""
        return cls(**state) if state else None

    def describe(self) -> str:
        low, high = (
            f"{math.exp(v):.2f}" if math.isfinite(v) else "unbounded" for v in (self.log_low, self.log_high)
        )
        fitted = (
            f"expected effect = exp({self.intercept:.2f}) · effect^{self.effect_slope:.2f} · "
            f"exp({self.cosine_slope:.2f} · nearest cosine)"
            if self.n_groups >= MIN_REGRESSION_GROUPS
            else "expected effect = the model's (too few groups for the evidence regression)"
        )
        return (
            f"{fitted}; {100 * self.level:.0f}% interval: expected × [{low}, {high}], calibrated on "
            f"{self.n_groups} validation groups the run never trained on"
        )


def effect_columns(
    interval: EffectInterval | None, effect: np.ndarray, cosine: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``expected_effect``, ``effect_low`` and ``effect_high`` of genes with model effects
    ``effect`` and nearest cosines ``cosine``; NaN throughout without a calibration."""
    if interval is None:
        missing = np.full(len(effect), np.nan)
        return missing, missing, missing
    return (interval.expected(effect, cosine), *interval.bounds(effect, cosine))


def nearest_measured(spec: ModelSpec, genes: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Each gene's most similar training perturbation other than itself (stage 1's rule, K = 1),
    and its cosine; ``genes`` must be in ``spec``'s vocabulary."""
    embeddings = spec.vocabulary_embeddings[spec.vocabulary_index(genes)]
    found = spec.database.neighbours(genes, embeddings, 1)
    return np.asarray(spec.database.perturbations)[found.index[:, 0]], found.cosine[:, 0]


def observed_effects(
    dataset: PerturbationDataset, groups: list[tuple[str, str]], mask: np.ndarray
) -> dict[tuple[str, str], float]:
    """The measured effect of each (cell type, perturbation) of ``groups`` among ``mask``'s cells,
    its sampling noise removed (module docstring; floored at 1e-6 so that its log exists)."""
    from ptrag.retrieval import ResponseMemory

    memory = ResponseMemory.from_training_cells(dataset, mask)
    shifts, noise = memory.shifts.astype(np.float64), memory.noise.astype(np.float64)
    squared = (shifts**2).sum(axis=1) - noise.sum(axis=1)
    norms = np.sqrt(np.maximum(squared, MIN_EFFECT**2))
    keys = zip(memory.cell_types, memory.perturbations, strict=True)
    found = {key: float(norm) for key, norm in zip(keys, norms, strict=True)}
    return {group: found[group] for group in groups if group in found}


def calibrate_effect_interval(
    checkpoint: Checkpoint,
    dataset: PerturbationDataset,
    n_cells: int,
    seed: int = 0,
    level: float = INTERVAL_LEVEL,
) -> EffectInterval | None:
    """The interval from the run's validation groups in ``dataset``; None (and an info line saying
    why) when the run has no saved split or the data holds none of its validation groups (a
    controls-only file, for example: screening works, without intervals)."""
    from ptrag.errors import PtragError
    from ptrag.prediction.screen import screen_genes
    from ptrag.run.layout import read_run_split

    run_dir = checkpoint.run_dir
    try:
        split = read_run_split(run_dir) if run_dir is not None else None
    except PtragError as exc:
        log.info("No effect-size intervals: the run's split cannot be read (%s).", exc)
        return None
    if split is None:
        log.info("No effect-size intervals: the checkpoint is not inside a run directory with its split.")
        return None
    roles = split.roles(dataset)
    groups = split.groups(dataset, "val")
    observed = observed_effects(dataset, groups, roles == "val")
    if not observed:
        log.info("No effect-size intervals: the data holds none of the run's validation groups.")
        return None
    predicted: dict[tuple[str, str], tuple[float, float]] = {}
    for cell_type in sorted({c for c, _ in observed}):
        genes = [p for c, p in observed if c == cell_type]
        table = screen_genes(
            checkpoint, dataset, cell_type, genes, n_cells=n_cells, seed=seed, progress=False, intervals=False
        ).table
        rows = zip(table["perturbation"], table["effect_size"], table["nearest_cosine"], strict=True)
        predicted |= {(cell_type, gene): (float(effect), float(cos)) for gene, effect, cos in rows}
    pairs = [g for g in observed if g in predicted]
    missing = sorted(set(observed) - set(pairs))
    if missing:
        log.info("effect-size calibration: %s not predicted (no embedding)", format_list(missing))
    model_effect, cosine = (np.array([predicted[g][i] for g in pairs]) for i in (0, 1))
    interval = EffectInterval.fit(model_effect, np.array([observed[g] for g in pairs]), cosine, level)
    log.info("%s.", interval.describe())
    return interval
