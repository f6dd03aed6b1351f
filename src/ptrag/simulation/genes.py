"""Which real genes are perturbed and measured, and the gene programs defined by real annotation.

A *program* is a set of target genes that share biology: one per complex family of the gene table
(``category``) and one per selected GO term (terms with at least two targets and at most
``go_program_max_genes`` annotated genes in the table, so generic terms such as "cytosol" never
link unrelated genes). A target's membership weights over programs decide how correlated its
response is with other targets' responses.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ptrag.errors import DataError
from ptrag.simulation.presets import SimulationPreset

__all__ = ["NON_COMPLEX_CATEGORIES", "GeneSelection", "select_genes"]

NON_COMPLEX_CATEGORIES = ("other", "background")
REQUIRED_COLUMNS = ("symbol", "go_ids", "category")


@dataclass(frozen=True)
class GeneSelection:
    """Targets, measured genes and programs of one simulated screen."""

    targets: tuple[str, ...]  # the perturbation pool, in a fixed order
    target_category: tuple[str, ...]  # complex family or "other"/"background"
    measured: tuple[str, ...]  # var_names, sorted
    line_targets: dict[str, tuple[str, ...]]  # perturbations screened in each cell line
    program_names: tuple[str, ...]  # "complex:<family>" or "go:<GO id>"
    membership: np.ndarray  # (n_targets, n_programs) float, a target's weight on each program
    program_member_genes: tuple[np.ndarray, ...]  # per program: indices into `measured` of member genes


def check_gene_table(table: pd.DataFrame) -> None:
    missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
    if missing:
        raise DataError(
            f"The gene table lacks column(s) {missing}; it has {list(table.columns)}. Pass a table like "
            "ptrag.embeddings.bundled.load_gene_table()."
        )
    if table["symbol"].duplicated().any():
        dup = table.loc[table["symbol"].duplicated(), "symbol"].head(5).tolist()
        raise DataError(f"The gene table repeats symbols {dup}; each gene must appear once.")


def _pick_targets(table: pd.DataFrame, preset: SimulationPreset, rng: np.random.Generator) -> list[str]:
    families = [c for c in pd.unique(table["category"]) if c not in NON_COMPLEX_CATEGORIES]
    by_family = {f: table.loc[table["category"] == f, "symbol"].tolist() for f in families}
    by_family = {f: s for f, s in by_family.items() if len(s) >= 3}
    n_complex = round(preset.n_perturbation_pool * preset.complex_fraction)
    order = [str(f) for f in rng.permutation(sorted(by_family))]
    # Take whole blocks of up to max_targets_per_complex from randomly ordered families, so every
    # chosen complex has several members (same-complex pairs are what makes retrieval useful).
    chosen: list[str] = []
    for family in order:
        if len(chosen) >= n_complex:
            break
        members = by_family[family]
        take = min(preset.max_targets_per_complex, len(members), n_complex - len(chosen))
        if take < 2:
            break
        chosen += [members[i] for i in np.sort(rng.choice(len(members), size=take, replace=False))]
    n_rest = preset.n_perturbation_pool - len(chosen)
    rest: list[str] = []
    for pool_name in NON_COMPLEX_CATEGORIES:
        pool = table.loc[table["category"] == pool_name, "symbol"].tolist()
        take = min(n_rest - len(rest), len(pool))
        rest += [pool[i] for i in np.sort(rng.choice(len(pool), size=take, replace=False))]
    targets = chosen + rest
    if len(targets) < preset.n_perturbation_pool:
        raise DataError(
            f"The gene table has too few genes for preset {preset.name!r}: {len(targets)} targets available, "
            f"{preset.n_perturbation_pool} needed."
        )
    return targets


def _pick_measured(
    table: pd.DataFrame, targets: list[str], preset: SimulationPreset, rng: np.random.Generator
) -> list[str]:
    n_measured_targets = min(
        round(len(targets) * preset.measured_target_fraction), preset.n_measured_genes // 2
    )
    measured_targets = [targets[i] for i in rng.choice(len(targets), size=n_measured_targets, replace=False)]
    others = np.array(sorted(set(table["symbol"]) - set(targets)))
    n_rest = preset.n_measured_genes - n_measured_targets
    if len(others) < n_rest:
        raise DataError(
            f"The gene table has too few non-target genes to measure {preset.n_measured_genes} genes."
        )
    rest = others[rng.choice(len(others), size=n_rest, replace=False)].tolist()
    return sorted(measured_targets + rest)


def _select_go_programs(
    table: pd.DataFrame, targets: list[str], preset: SimulationPreset, rng: np.random.Generator
) -> list[str]:
    table_counts: Counter[str] = Counter(go for ids in table["go_ids"] for go in ids)
    go_of = dict(zip(table["symbol"], table["go_ids"], strict=True))
    target_counts: Counter[str] = Counter(go for t in targets for go in set(go_of[t]))
    eligible = sorted(
        go
        for go, n in target_counts.items()
        if n >= 2 and table_counts[go] <= preset.response.go_program_max_genes
    )
    n_pick = min(preset.n_go_programs, len(eligible))
    # Terms shared by many targets are likelier programs: that is where real screens show modules.
    weight = np.array([target_counts[go] for go in eligible], dtype=np.float64)
    picked = rng.choice(len(eligible), size=n_pick, replace=False, p=weight / weight.sum())
    return [eligible[i] for i in np.sort(picked)]


def _line_targets(
    targets: list[str], preset: SimulationPreset, rng: np.random.Generator
) -> dict[str, tuple[str, ...]]:
    n = min(preset.n_perturbations_per_line, len(targets))
    out: dict[str, tuple[str, ...]] = {}
    for line in preset.cell_lines:
        picked = np.sort(rng.choice(len(targets), size=n, replace=False))
        out[line] = tuple(targets[i] for i in picked)
    return out


def select_genes(table: pd.DataFrame, preset: SimulationPreset, rng: np.random.Generator) -> GeneSelection:
    """Choose targets, measured genes, per-line perturbations and programs from the gene table."""
    check_gene_table(table)
    table = table.reset_index(drop=True)
    targets = _pick_targets(table, preset, rng)
    measured = _pick_measured(table, targets, preset, rng)
    go_programs = _select_go_programs(table, targets, preset, rng)
    category_of = dict(zip(table["symbol"], table["category"], strict=True))
    go_of = {s: set(ids) for s, ids in zip(table["symbol"], table["go_ids"], strict=True)}
    categories = [str(category_of[t]) for t in targets]
    families = sorted({c for c in categories if c not in NON_COMPLEX_CATEGORIES})
    program_names = [f"complex:{f}" for f in families] + [f"go:{g}" for g in go_programs]

    membership = np.zeros((len(targets), len(program_names)), dtype=np.float64)
    for i, target in enumerate(targets):
        if categories[i] in families:
            membership[i, families.index(categories[i])] = 1.0
        own = [j for j, go in enumerate(go_programs) if go in go_of[target]]
        if own:
            # Spread a fixed GO weight over the target's terms: many terms do not mean a bigger effect.
            membership[i, [len(families) + j for j in own]] = preset.response.go_program_weight / np.sqrt(
                len(own)
            )

    measured_index = {g: k for k, g in enumerate(measured)}
    member_genes: list[np.ndarray] = []
    for family in families:
        genes = table.loc[table["category"] == family, "symbol"]
        member_genes.append(
            np.array(sorted(measured_index[g] for g in genes if g in measured_index), dtype=int)
        )
    for go in go_programs:
        genes = [s for s, ids in go_of.items() if go in ids]
        member_genes.append(
            np.array(sorted(measured_index[g] for g in genes if g in measured_index), dtype=int)
        )

    return GeneSelection(
        targets=tuple(targets),
        target_category=tuple(categories),
        measured=tuple(measured),
        line_targets=_line_targets(targets, preset, rng),
        program_names=tuple(program_names),
        membership=membership,
        program_member_genes=tuple(member_genes),
    )
