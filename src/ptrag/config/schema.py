"""Typed, frozen configuration. Every default of ptrag lives here and nowhere else."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Arm = Literal["st", "vanilla_rag", "ptrag", "memory"]
ARMS: tuple[str, ...] = ("st", "vanilla_rag", "ptrag", "memory")


@dataclass(frozen=True)
class DataConfig:
    """How to read a perturbation screen. ``None`` means: detect it."""

    perturbation_column: str | None = None
    cell_type_column: str | None = None
    batch_column: str | None = None
    control_label: str | None = None
    # "auto": obsm["X_hvg"] when present, else X. Otherwise "X" or an obsm key.
    expression: str = "auto"
    n_top_genes: int = 2000
    # Dense float16 halves the memory of float32 with ~3 significant digits, ample for log1p data.
    storage: Literal["auto", "float16", "float32", "sparse"] = "auto"


@dataclass(frozen=True)
class EmbeddingConfig:
    """Gene embeddings of the perturbation targets (GenePT or a GenePT-style table)."""

    # "bundled" = the table shipped with ptrag; otherwise a path (.pkl, .npz, .csv, .tsv, .parquet, .pt).
    source: str = "bundled"
    # What to do with perturbations that have no embedding: fail, drop them, or use zeros.
    missing: Literal["error", "drop", "zero"] = "error"


@dataclass(frozen=True)
class ModelConfig:
    arm: Arm = "ptrag"
    hidden_dim: int = 128
    n_layers: int = 4
    n_heads: int = 8
    ff_mult: int = 4
    dropout: float = 0.0
    encoder_layers: int = 2
    # "embedding" = gene embeddings (the fair default); "onehot" = the paper's STATE arm.
    pert_encoding: Literal["embedding", "onehot"] = "embedding"
    use_batch: bool = True
    # "expression": each predicted cell = its control cell + a learned response (keeps per-cell variation);
    # "basal": the paper's ReLU(W_out(T(h) + f_basal(x))), which must squeeze that variation through H dims.
    output_residual: Literal["expression", "basal"] = "expression"
    loss: Literal["energy", "sinkhorn"] = "energy"
    sinkhorn_blur: float = 0.05


@dataclass(frozen=True)
class RetrievalConfig:
    top_k: int = 32
    tau: float = 0.5
    sparsity_weight: float = 0.1
    # PT-RAG: "replace_sum" (paper: token := sum of kept contexts) or "residual_mean" (token += mean).
    combine: Literal["replace_sum", "residual_mean"] = "residual_mean"
    # Vanilla RAG: attention output replaces the token or is added to it.
    vanilla_combine: Literal["replace", "add"] = "add"
    # Inference selection: deterministic argmax (default) or Gumbel sampling.
    inference: Literal["deterministic", "sample"] = "deterministic"


@dataclass(frozen=True)
class TrainConfig:
    max_steps: int = 50_000
    lr: float = 1e-3
    weight_decay: float = 0.0
    grad_clip: float = 10.0
    sets_per_batch: int = 64
    cell_set_len: int = 64
    val_every: int = 1000
    val_sets: int = 64
    checkpoint_every: int = 1000
    seed: int = 0
    # 0 = choose: one thread per physical core, at most 4 on CPU.
    num_threads: int = 0
    accelerator: str = "auto"
    devices: str = "1"
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str = "32-true"
    # True asks torch for deterministic kernels (slower on GPU); CPU runs are reproducible either way.
    deterministic: bool = False
    tensorboard: bool = False
    wandb: bool = False


@dataclass(frozen=True)
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    embedding: EmbeddingConfig = field(default_factory=EmbeddingConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
