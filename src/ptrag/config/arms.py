"""The arm registry: every model a run or a benchmark row can be, and what it is made of.

An arm is a model *kind* (which modules the model has) plus its own config settings. ``model.arm``
names a registered arm; ``load_config`` applies the arm's settings after the preset or file and
before ``--set`` overrides, and the model builder reads the kind's needs from here instead of
comparing strings. Adding an arm (an ablation such as shuffled neighbours, say) is one
``register_arm`` call; ``ptrag train --arm`` and ``ptrag benchmark --arms`` accept it at once.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from ptrag.errors import ConfigError, format_list

__all__ = [
    "ARMS",
    "BASELINE_ARM",
    "Arm",
    "ModelKind",
    "ablation_arms",
    "default_benchmark_arms",
    "get_arm",
    "parse_arms",
    "register_arm",
]

Head = Literal["selector", "attention"]
# The arm every other arm is compared with (the STATE-style set transformer, no retrieval).
BASELINE_ARM = "st"


@dataclass(frozen=True)
class ModelKind:
    """Which parts a model is built from."""

    name: str
    retriever: bool  # stage 1: neighbour tables over the training database
    memory: bool  # candidates are (perturbation, cell type) rows of the response memory
    head: Head | None  # stage 2: PT-RAG's keep/drop selector, or vanilla RAG's attention


KINDS: dict[str, ModelKind] = {
    kind.name: kind
    for kind in (
        ModelKind("st", retriever=False, memory=False, head=None),
        ModelKind("vanilla_rag", retriever=True, memory=False, head="attention"),
        ModelKind("ptrag", retriever=True, memory=False, head="selector"),
        ModelKind("memory", retriever=True, memory=True, head="selector"),
    )
}


@dataclass(frozen=True)
class Arm:
    name: str
    kind: ModelKind
    description: str
    # ``section.key=value`` settings that define the arm (applied before the user's --set).
    overrides: tuple[str, ...] = ()
    # Part of `ptrag benchmark`'s default --arms.
    in_default_benchmark: bool = False
    # An ablation (added by `ptrag benchmark --ablations`) names the arm it takes one component out
    # of, and that component in words: the report says what the component adds, arm vs ablation.
    ablates: str | None = None
    component: str = ""

    @property
    def ablation(self) -> bool:
        return self.ablates is not None


ARMS: dict[str, Arm] = {}


def register_arm(
    name: str,
    kind: str,
    description: str,
    overrides: Iterable[str] = (),
    in_default_benchmark: bool = False,
    ablates: str | None = None,
    component: str = "",
) -> Arm:
    if name in ARMS:
        raise ValueError(f"arm {name!r} is already registered")
    if ablates is not None and (ablates not in ARMS or not component):
        raise ValueError(f"ablation {name!r} must name a registered arm and the component it removes")
    arm = Arm(name, KINDS[kind], description, tuple(overrides), in_default_benchmark, ablates, component)
    ARMS[name] = arm
    return arm


def get_arm(name: str) -> Arm:
    arm = ARMS.get(name)
    if arm is None:
        raise ConfigError(f"Unknown arm {name!r}. Registered arms: {format_list(ARMS)}.")
    return arm


def parse_arms(text: str) -> list[Arm]:
    """``"st,ptrag"`` → the registered arms, in order; an unknown or repeated name is an error."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise ConfigError("--arms names no arm. Registered arms: " + format_list(ARMS) + ".")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ConfigError(f"--arms names {format_list(repeated)} more than once.")
    return [get_arm(name) for name in names]


def default_benchmark_arms() -> tuple[str, ...]:
    return tuple(name for name, arm in ARMS.items() if arm.in_default_benchmark)


def ablation_arms() -> tuple[str, ...]:
    return tuple(name for name, arm in ARMS.items() if arm.ablation)


register_arm(
    "st",
    "st",
    "Set transformer over control cells, perturbation given as its gene embedding (the baseline).",
    in_default_benchmark=True,
)
register_arm(
    "st_onehot",
    "st",
    "ST with a learned one-hot perturbation table: the paper's STATE arm.",
    overrides=("model.pert_encoding=onehot",),
    ablates="st",
    component="Gene-embedding perturbation encoding (vs the paper's one-hot table)",
)
register_arm(
    "st_unanchored",
    "st",
    "ST on the sampled control cells as they are, without re-centring them on the control pool.",
    overrides=("model.anchor=none",),
    ablates="st",
    component="Anchoring each set to its cell type's control pool",
)
register_arm(
    "st_relu",
    "st",
    "ST whose expression-space output is clipped at 0 after the shift (the earlier default).",
    overrides=("model.output_activation=relu",),
    ablates="st",
    component="The unclipped output (vs a ReLU after re-centring and shifting the control cells)",
)
register_arm(
    "vanilla_rag",
    "vanilla_rag",
    "ST plus softmax cross-attention to the K most similar training perturbations.",
    in_default_benchmark=True,
)
register_arm(
    "ptrag",
    "ptrag",
    "ST plus PT-RAG's per-cell keep/drop selection of the K retrieved perturbations.",
    in_default_benchmark=True,
)
register_arm(
    "ptrag_paper",
    "ptrag",
    "PT-RAG exactly as published: embedding-only candidates, kept contexts replace the token "
    "(replace_sum), absolute sparsity lambda = 0.1, unbiased keep/drop start.",
    overrides=(
        "retrieval.combine=replace_sum",
        "retrieval.sparsity=absolute",
        "retrieval.sparsity_weight=0.1",
        "retrieval.keep_bias=0",
        "retrieval.candidate_features=false",
    ),
    ablates="ptrag",
    component="ptrag's changes to the paper's stage 2 (candidate features, keep-biased start, "
    "relative sparsity, residual combine)",
)
register_arm(
    "memory",
    "memory",
    "The evidence arm: observed mean shifts (the query measured in other cell types, then its "
    "neighbours in the query's cell type) added in expression space, chosen per cell by PT-RAG's "
    "selector, shrunk where they do not stand out of their own noise.",
    in_default_benchmark=True,
)
register_arm(
    "memory_shuffled",
    "memory",
    "The memory arm with as many random measured rows as candidates instead of the query's own "
    "measurements and nearest neighbours: what is left is capacity, not content.",
    overrides=("retrieval.candidates=shuffled",),
    ablates="memory",
    component="What is retrieved (the query's own measurements and nearest neighbours, vs as many "
    "random measured rows)",
)
register_arm(
    "memory_set_selection",
    "memory",
    "The memory arm with one keep/drop decision per (set, candidate), shared by the set's cells.",
    overrides=("retrieval.selection_scope=set",),
    ablates="memory",
    component="Per-cell selection (stage 2 decides per cell vs once per set)",
)
register_arm(
    "memory_pooled_loss",
    "memory",
    "The memory arm trained on the pooled energy alone, without the energy within basal-state strata.",
    overrides=("model.strata_loss_weight=0",),
    ablates="memory",
    component="The stratified loss (energy within basal-state strata beside the pooled energy)",
)
register_arm(
    "memory_no_state_gain",
    "memory",
    "The memory arm whose predicted cells keep the responses the model gave them, without the state "
    "gains learned from the training groups' basal-state strata.",
    overrides=("prediction.state_gain=off",),
    ablates="memory",
    component="State gains (each cell's response scaled by how its basal-state stratum responded in "
    "training)",
)
