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

Head = Literal["selector", "attention"]


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


ARMS: dict[str, Arm] = {}


def register_arm(
    name: str,
    kind: str,
    description: str,
    overrides: Iterable[str] = (),
    in_default_benchmark: bool = False,
) -> Arm:
    if name in ARMS:
        raise ValueError(f"arm {name!r} is already registered")
    arm = Arm(name, KINDS[kind], description, tuple(overrides), in_default_benchmark)
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
    "PT-RAG exactly as published: kept contexts replace the token (replace_sum), lambda = 0.1.",
    overrides=("retrieval.combine=replace_sum", "retrieval.sparsity_weight=0.1"),
)
register_arm(
    "memory",
    "memory",
    "PT-RAG's selection over observed training responses: the query measured in other cell types, "
    "then its neighbours in the query's cell type.",
    in_default_benchmark=True,
)
