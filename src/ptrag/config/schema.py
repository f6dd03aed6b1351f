"""Typed, frozen configuration. Every default of ptrag lives here and nowhere else.

Numeric fields carry their valid range as field metadata (``at_least``, ``above``, ``fraction``);
:mod:`ptrag.config.loading` checks it whenever a config is built, so a bad value is refused before
any output exists.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from ptrag.keys import BUNDLED_SOURCE

__all__ = [
    "DEFAULT_ARM",
    "DEFAULT_PRESET",
    "AnchorMode",
    "Config",
    "DataConfig",
    "EmbeddingConfig",
    "ModelConfig",
    "PredictionConfig",
    "RetrievalConfig",
    "TrainConfig",
    "above",
    "at_least",
    "fraction",
]

# What a set of control cells is re-centred on before its response (``ModelConfig.anchor``).
AnchorMode = Literal["none", "control_pool", "batch_pool"]

# The preset a command or ``ptrag.Model.from_config()`` uses when none is named.
DEFAULT_PRESET = "cpu-small"
# The arm trained when none is named (a name in ``ptrag.config.arms``).
DEFAULT_ARM = "ptrag"


def at_least(minimum: float, default: Any) -> Any:
    """A field whose value must be ≥ ``minimum``."""
    return field(default=default, metadata={"min": minimum})


def above(minimum: float, default: Any) -> Any:
    """A field whose value must be > ``minimum``."""
    return field(default=default, metadata={"min": minimum, "exclusive": True})


def fraction(default: float) -> Any:
    """A field in [0, 1)."""
    return field(default=default, metadata={"min": 0.0, "max_exclusive": 1.0})


@dataclass(frozen=True)
class DataConfig:
    """How to read a perturbation screen. ``None`` means: detect it."""

    perturbation_column: str | None = None
    cell_type_column: str | None = None
    batch_column: str | None = None
    control_label: str | None = None
    # "auto": obsm["X_hvg"] when present, else X. Otherwise "X" or an obsm key.
    expression: str = "auto"
    n_top_genes: int = at_least(1, 2000)
    # Dense float16 halves the memory of float32 with ~3 significant digits, ample for log1p data.
    storage: Literal["auto", "float16", "float32", "sparse"] = "auto"


@dataclass(frozen=True)
class EmbeddingConfig:
    """Gene embeddings of the perturbation targets (GenePT or a GenePT-style table)."""

    # "bundled" = the table shipped with ptrag; otherwise a path (.pkl, .npz, .csv, .tsv, .parquet, .pt).
    source: str = BUNDLED_SOURCE
    # The gene priors combined into each gene's vector (ptrag.embeddings.priors): "text" (the table
    # above), "go" (the annotation graph), "coexpression" (control-cell correlation, from the data).
    # text + go was chosen on validation perturbations of replogle-like (docs/priors.md).
    sources: tuple[str, ...] = ("text", "go")
    # What to do with perturbations that have no embedding: fail, drop them, or use zeros.
    missing: Literal["error", "drop", "zero"] = "error"


@dataclass(frozen=True)
class ModelConfig:
    # A registered arm (``ptrag.config.arms``): its model kind and its own settings.
    arm: str = DEFAULT_ARM
    hidden_dim: int = at_least(1, 128)
    n_layers: int = at_least(1, 4)
    n_heads: int = at_least(1, 8)
    ff_mult: int = at_least(1, 4)
    dropout: float = fraction(0.0)
    encoder_layers: int = at_least(1, 2)
    # "embedding" = gene embeddings (the fair default); "onehot" = the paper's STATE arm.
    pert_encoding: Literal["embedding", "onehot"] = "embedding"
    use_batch: bool = True
    # "expression": each predicted cell = its control cell + a learned response (keeps per-cell variation);
    # "basal": the paper's ReLU(W_out(T(h) + f_basal(x))), which must squeeze that variation through H dims.
    output_residual: Literal["expression", "basal"] = "expression"
    # The expression-space output's last step: "relu" clips at 0 (log1p cannot be negative); "none"
    # leaves the anchored, shifted cells as they are, as every reference does. Clipping after the
    # re-centring and the shift cuts the negative side of each shifted zero, which moves the
    # predicted mean up on the sparse genes (docs/generation.md measures it).
    output_activation: Literal["relu", "none"] = "none"
    # "control_pool": each set of control cells is re-centred on its cell type's whole control pool
    # before the response is added (a 32-64-cell mean is noisy); "batch_pool": on the mean, over the
    # set's cells, of their own batch's control mean (a group keeps the offset of the batches its
    # cells came from, as its real cells do); "none": the sampled cells as they are.
    # batch_pool chosen on validation (memory, seed 0; docs/generation.md): replogle-like few-shot
    # better on every metric (p <= 7e-5), unseen on W1 and pearson_delta (p <= 6e-8), hetero tied.
    anchor: AnchorMode = "batch_pool"
    # "energy_unbiased": the energy distance with self-distances left out of the within-set means
    # (U-statistic), minimised by the true spread; "energy": geomloss's V-statistic, whose optimum at
    # S = 32 in gene space is ~0.94 of the true spread (ptrag.models.losses); "sinkhorn".
    loss: Literal["energy", "energy_unbiased", "sinkhorn"] = "energy_unbiased"
    # Weight of a set-mean term (MSE between predicted and observed set means, over genes) added to
    # the training loss; 0 = the distributional loss alone. Measured on replogle-like validation
    # groups (ST, 1 seed): weight 1 → energy 1.347 vs 1.343, pearson_delta 0.177 vs 0.171; weight 10
    # → 1.347 / 0.172: no gain on both, so it is off by default (docs/evaluation.md).
    mean_loss_weight: float = at_least(0.0, 0.0)
    sinkhorn_blur: float = above(0.0, 0.05)
    # Share of the training loss given to the energy within basal-state strata of the controls
    # (ptrag.models.losses.stratified_energy; the rest stays the pooled loss). 0 = pooled only.
    # Chosen on validation (docs/generation.md): 0.5 against 0 and 0.25 on replogle-like and
    # replogle-hetero; the pooled loss alone let a per-cell response unrelated to cell state widen
    # every arm's predictions (sd_ratio 1.02-1.03).
    strata_loss_weight: float = fraction(0.5)


@dataclass(frozen=True)
class RetrievalConfig:
    # Candidates per query; must not exceed the training database (checked before training).
    top_k: int = at_least(1, 32)
    tau: float = above(0.0, 0.5)
    # "relative": λ · selection rate · distribution loss (detached), so dropping everything can gain
    # at most λ of the loss whatever its scale; "absolute": λ · selection rate (the paper).
    sparsity: Literal["relative", "absolute"] = "relative"
    sparsity_weight: float = at_least(0.0, 0.01)
    # Initial keep logit minus drop logit of the selector (P(keep) = sigmoid of it).
    keep_bias: float = 3.0
    # The scorer also sees each candidate's cosine (and, for the memory arm, the same-perturbation
    # flag, its share of the evidence mixture and the evidence's noise); false = the paper's scorer.
    candidate_features: bool = True
    # "nearest": the top-K by cosine; "shuffled": as many random training candidates (an ablation).
    candidates: Literal["nearest", "shuffled"] = "nearest"
    # Evidence path (memory arm): initial weight of the query's own shift measured in other cell types
    # over its neighbours (a logit offset), and the initial James-Stein factor of the per-gene noise
    # shrinkage (0 turns shrinkage off). Both are learned from there.
    same_prior: float = at_least(0.0, 6.0)
    # Neighbours' initial weights: cos^sharpness (1 = plain cosine weighting).
    sharpness: float = above(0.0, 4.0)
    # Training only: the fraction of sets whose query is hidden from its own measurements in other
    # cell types, so the model also learns from its neighbours alone (as for a perturbation never
    # measured anywhere: unseen splits, in-silico queries).
    same_dropout: float = fraction(0.5)
    shrinkage: float = at_least(0.0, 4.0)
    # PT-RAG: "replace_sum" (paper: token := sum of kept contexts) or "residual_mean" (token += mean).
    combine: Literal["replace_sum", "residual_mean"] = "residual_mean"
    # Vanilla RAG: attention output replaces the token or is added to it.
    vanilla_combine: Literal["replace", "add"] = "add"
    # Training selection: hard Gumbel-Softmax samples (PT-RAG) or the inference decision itself
    # ("threshold"); both pass softmax(l/τ)'s gradient straight through.
    training_selection: Literal["gumbel", "threshold"] = "gumbel"
    # Inference selection: deterministic argmax (default) or Gumbel sampling.
    inference: Literal["deterministic", "sample"] = "deterministic"
    # Stage 2 decides per (cell, candidate) ("cell", PT-RAG) or once per (set, candidate) from the
    # mean of its cells' margins ("set": the ablation without per-cell selection).
    selection_scope: Literal["cell", "set"] = "cell"
    # Memory arm: each cell's evidence scaled by a gain 2σ(g([f_basal(x_i); f_pert(e_p)])), 1 at
    # initialisation, so a response can be stronger in some basal states than in others.
    cell_gain: bool = False


@dataclass(frozen=True)
class TrainConfig:
    max_steps: int = at_least(1, 50_000)
    lr: float = above(0.0, 1e-3)
    weight_decay: float = at_least(0.0, 0.0)
    # Validate, keep and predict with an exponential moving average of the weights over the last
    # ~1/(1 - ema_decay) steps (ptrag.training.averaging); 0 = the raw weights. Chosen on validation
    # (docs/training.md): every arm's validation loss and metrics improved at 0.99; 0.995 and 0.998
    # gave the same runs on cpu-small, whose ramp (1 + n) / (10 + n) stays below them for ~1,000 steps.
    ema_decay: float = fraction(0.99)
    grad_clip: float = at_least(0.0, 10.0)  # 0 = no clipping
    sets_per_batch: int = at_least(1, 64)
    cell_set_len: int = at_least(1, 64)
    # Validation loss (energy distance on fixed val sets) every val_every steps and at the last step.
    val_every: int = at_least(1, 1000)
    val_sets: int = at_least(1, 64)
    # A split without val groups: this fraction of the training groups is held out for validation
    # (seeded, the same for every arm and seed). 0 = no validation; then predict uses last.ckpt.
    val_fraction: float = fraction(0.1)
    # Stop after this many validations in a row without a lower validation loss (0 = never stop
    # early). checkpoints/best.ckpt always holds the weights with the lowest validation loss.
    patience: int = at_least(0, 0)
    # After training, scale the learned response W_out T(h) of the best checkpoint by the factor in
    # ptrag.training.calibration.RESIDUAL_SCALES with the lowest validation loss (1 keeps it as
    # trained). Measured on replogle-like val: the learned per-cell correction can cost energy.
    calibrate_residual: bool = True
    checkpoint_every: int = at_least(1, 1000)
    seed: int = at_least(0, 0)
    # 0 = respect OMP_NUM_THREADS when set, otherwise torch's own setting capped at 4 threads.
    num_threads: int = at_least(0, 0)
    # Processes that gather training sets while the model trains (DataLoader workers). -1 = choose:
    # none on a CPU, whose cores the model's threads already use (2-core machine, cpu-small: no gain
    # with 1 thread, 24-29% slower steps with 2 threads), and up to 4 per device with an accelerator,
    # with prefetch and pinned memory. Batches are the same either way (ptrag.training.batches).
    num_workers: int = at_least(-1, -1)
    accelerator: str = "auto"
    devices: str = "1"
    num_nodes: int = at_least(1, 1)
    strategy: str = "auto"
    precision: str = "32-true"
    # True asks torch for deterministic kernels (slower on GPU); CPU runs are reproducible either way.
    deterministic: bool = False
    tensorboard: bool = False
    wandb: bool = False


@dataclass(frozen=True)
class PredictionConfig:
    """What prediction adds to the model's output, in every workflow (held-out groups, queries, screens)."""

    # "prior": a perturbation whose target is a measured gene gets, in that gene, the knockdown the
    # training data show (each cell's own control value times a remaining fraction drawn per cell
    # from the cell type's measured targets; ptrag.prediction.knockdown, docs/prediction.md).
    # "off": the model's own prediction of the target, as before. Measured on replogle-like (memory
    # arm, unseen split, 1 seed; docs/prediction.md): in a k562 screen, never-measured targets fell in
    # 50% of cases without it and in 99.4% with it; held-out never-measured targets' own change had
    # median -0.71 with it, -0.74 measured, +0.01 without; energy_gene 1.294 -> 1.281.
    target_knockdown: Literal["prior", "off"] = "prior"
    # "strata": each predicted cell's response is scaled gene by gene by how strongly training
    # groups of its cell type responded in the basal-state stratum of its control cell, relative to
    # the group's mean response (the predicted mean is unchanged; ptrag.run.state_gains,
    # docs/generation.md). "off": cells keep the responses the model predicted.
    state_gain: Literal["strata", "off"] = "strata"


@dataclass(frozen=True)
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    embedding: EmbeddingConfig = field(default_factory=EmbeddingConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    prediction: PredictionConfig = field(default_factory=PredictionConfig)
