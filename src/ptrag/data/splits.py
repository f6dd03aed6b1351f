"""Train/val/test splits in STATE's TOML format, and seeded few-shot / zero-shot generation.

File format (as in STATE and PT-RAG's published ``repogle_nadig*.toml``)::

    [datasets]
    replogle = "/path/to/data"
    [training]
    replogle = "train"
    [zeroshot]
    "replogle.jurkat" = "test"            # a whole cell type held out
    [fewshot."replogle.k562"]
    val = ["NDUFS3", ...]                 # these perturbations of k562 go to val
    test = ["RPL7", ...]                  # may also appear in other cell types' training data

In a :class:`Split` the few-shot and zero-shot keys are cell types; ``name`` is the dataset name
that prefixes them in the file. A perturbation listed in both val and test counts as test.
"""

from __future__ import annotations

import tomllib
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ptrag.data.dataset import PerturbationDataset
from ptrag.errors import SplitError, format_list
from ptrag.io import atomic_write_text

__all__ = ["Split", "generate_fewshot", "generate_unseen", "generate_zeroshot"]

HELD_OUT_ROLES = ("val", "test")
SECTIONS = ("datasets", "training", "zeroshot", "fewshot")


@dataclass(frozen=True)
class Split:
    """Which (cell type, perturbation) pairs are train, val or test. Equality compares contents."""

    name: str
    fewshot: Mapping[str, Mapping[str, Sequence[str]]] = field(default_factory=dict)
    zeroshot: Mapping[str, str] = field(default_factory=dict)
    datasets: Mapping[str, str] = field(default_factory=dict)
    training: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Normalise so that equality and round-trips do not depend on list vs tuple or key order.
        fewshot = {
            str(cell_type): {role: tuple(str(p) for p in lists.get(role, ())) for role in HELD_OUT_ROLES}
            for cell_type, lists in self.fewshot.items()
        }
        for cell_type, lists in self.fewshot.items():
            unknown = set(lists) - set(HELD_OUT_ROLES)
            if unknown:
                raise SplitError(
                    f"fewshot entry {cell_type!r} has keys {format_list(sorted(unknown))}; only val/test."
                )
        for cell_type, role in self.zeroshot.items():
            if role not in HELD_OUT_ROLES:
                raise SplitError(f"zeroshot entry {cell_type!r} = {role!r}; it must be 'val' or 'test'.")
        overlap = sorted(set(fewshot) & set(self.zeroshot))
        if overlap:
            raise SplitError(f"Cell type(s) {format_list(overlap)} are both zero-shot and few-shot.")
        object.__setattr__(self, "fewshot", fewshot)
        object.__setattr__(self, "zeroshot", {str(k): str(v) for k, v in self.zeroshot.items()})
        object.__setattr__(self, "datasets", {str(k): str(v) for k, v in self.datasets.items()})
        object.__setattr__(self, "training", {str(k): str(v) for k, v in self.training.items()})

    __hash__ = None  # type: ignore[assignment]  # mappings are not hashable

    # ---- roles -------------------------------------------------------------------------------
    def role(self, cell_type: str, perturbation: str) -> str:
        """``"train"``, ``"val"`` or ``"test"`` for a perturbation in a cell type."""
        if cell_type in self.zeroshot:
            return self.zeroshot[cell_type]
        lists = self.fewshot.get(cell_type)
        if lists is not None:
            if perturbation in lists["test"]:
                return "test"
            if perturbation in lists["val"]:
                return "val"
        return "train"

    def roles(self, dataset: PerturbationDataset) -> np.ndarray:
        """The role of every cell (``"control"`` for control cells), as a str array."""
        conditions = dataset.conditions
        present, inverse = np.unique(conditions.code, return_inverse=True)
        table = np.empty(present.size, dtype=object)
        for k, code in enumerate(present):
            cell_type, pert = conditions.name(int(code))
            table[k] = "control" if pert == dataset.control_label else self.role(cell_type, pert)
        return table[inverse].astype(str)

    def groups(self, dataset: PerturbationDataset, role: str) -> list[tuple[str, str]]:
        """Sorted (cell type, perturbation) pairs of ``role`` that have cells in ``dataset``."""
        return [group for group in dataset.conditions.groups if self.role(*group) == role]

    def validate(self, dataset: PerturbationDataset) -> None:
        """Fail, listing them, if the split names cell types or perturbations absent from ``dataset``."""
        known_types = set(dataset.cell_types)
        named_types = sorted(set(self.fewshot) | set(self.zeroshot))
        unknown_types = [t for t in named_types if t not in known_types]
        if unknown_types:
            raise SplitError(
                f"Split {self.name!r} names cell type(s) not in the data: {format_list(unknown_types)}. "
                f"Cell types in the data: {format_list(sorted(known_types))}."
            )
        unknown: list[str] = []
        for cell_type, lists in self.fewshot.items():
            present = set(dataset.perturbations(cell_type))
            for role in HELD_OUT_ROLES:
                unknown += [f"{p} ({cell_type} {role})" for p in lists[role] if p not in present]
        if unknown:
            raise SplitError(
                f"Split {self.name!r} names {len(unknown)} perturbation(s) that have no cells of that cell "
                f"type in the data: {format_list(unknown)}. Regenerate the split for this data "
                "(ptrag split) or fix the lists."
            )

    # ---- TOML --------------------------------------------------------------------------------
    @classmethod
    def read(cls, path: str | Path) -> Split:
        """Read a STATE TOML split file."""
        path = Path(path)
        try:
            document = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise SplitError(f"Split file {path} does not exist.") from exc
        except (OSError, UnicodeDecodeError) as exc:
            raise SplitError(f"Cannot read split file {path}: {exc}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise SplitError(f"Split file {path} is not valid TOML: {exc}") from exc
        return cls.from_dict(document, str(path))

    @classmethod
    def from_dict(cls, document: Mapping[str, Any], origin: str = "split") -> Split:
        unknown = sorted(set(document) - set(SECTIONS))
        if unknown:
            raise SplitError(
                f"{origin}: unknown section(s) {format_list(unknown)}; expected {format_list(SECTIONS)}."
            )
        tables = {}
        for section in SECTIONS:
            value = document.get(section, {})
            if not isinstance(value, Mapping):
                raise SplitError(f"{origin}: [{section}] must be a table.")
            tables[section] = value
        datasets = _string_table(tables["datasets"], "datasets", origin)
        training = _string_table(tables["training"], "training", origin)
        zeroshot_raw = _string_table(tables["zeroshot"], "zeroshot", origin)
        names = set(datasets) | set(training)
        keys = list(zeroshot_raw) + list(tables["fewshot"])
        prefixes = {_split_key(key, names, origin)[0] for key in keys}
        dataset_names = (prefixes or names) or {"data"}
        if len(dataset_names) > 1:
            raise SplitError(
                f"{origin} describes several datasets ({format_list(sorted(dataset_names))}); "
                "ptrag trains on one screen at a time. Keep one dataset's entries."
            )
        name = next(iter(dataset_names))
        zeroshot = {_split_key(k, names, origin)[1]: v for k, v in zeroshot_raw.items()}
        fewshot: dict[str, dict[str, list[str]]] = {}
        for key, lists in tables["fewshot"].items():
            if not isinstance(lists, Mapping):
                raise SplitError(f"{origin}: [fewshot.{key!r}] must be a table with val/test lists.")
            entry: dict[str, list[str]] = {}
            for role, values in lists.items():
                if role not in HELD_OUT_ROLES:
                    raise SplitError(f"{origin}: [fewshot.{key!r}] has key {role!r}; only val and test.")
                if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
                    raise SplitError(
                        f"{origin}: [fewshot.{key!r}].{role} must be a list of perturbation names."
                    )
                entry[role] = values
            fewshot[_split_key(key, names, origin)[1]] = entry
        return cls(name=name, fewshot=fewshot, zeroshot=zeroshot, datasets=datasets, training=training)

    def to_toml(self) -> str:
        import tomli_w

        lines = [
            f"# ptrag split {self.name!r} (STATE TOML format)",
            "# [datasets]: dataset name -> path; [training]: datasets whose remaining cells train;",
            '# [zeroshot]: "dataset.celltype" -> val|test; [fewshot."dataset.celltype"]: val/test lists.',
            "",
        ]
        head = {
            "datasets": dict(self.datasets),
            "training": dict(self.training),
            "zeroshot": {f"{self.name}.{k}": v for k, v in sorted(self.zeroshot.items())},
        }
        for section, table in head.items():
            lines.append(tomli_w.dumps({section: table}).strip() or f"[{section}]")
            if not table:
                lines[-1] = f"[{section}]"
            lines.append("")
        lines.append("[fewshot]")
        for cell_type, lists in sorted(self.fewshot.items()):
            table = {role: list(lists[role]) for role in HELD_OUT_ROLES}
            block = tomli_w.dumps({"fewshot": {f"{self.name}.{cell_type}": table}}, multiline_strings=False)
            lines.append(block.replace("[fewshot]\n", "").strip())
            lines.append("")
        return "\n".join(lines).rstrip() + "\n"

    def write(self, path: str | Path) -> None:
        """Write the split as STATE TOML, atomically."""
        atomic_write_text(path, self.to_toml())


def _string_table(table: Mapping[str, Any], section: str, origin: str) -> dict[str, str]:
    bad = [k for k, v in table.items() if not isinstance(v, str)]
    if bad:
        raise SplitError(f"{origin}: [{section}] values must be strings; check {format_list(bad)}.")
    return dict(table)


def _split_key(key: str, dataset_names: set[str], origin: str) -> tuple[str, str]:
    """``"dataset.celltype"`` → (dataset, celltype); a known dataset name wins over the first dot."""
    for name in sorted(dataset_names, key=len, reverse=True):
        if key.startswith(name + ".") and len(key) > len(name) + 1:
            return name, key[len(name) + 1 :]
    dataset, dot, cell_type = key.partition(".")
    if not dot or not dataset or not cell_type:
        raise SplitError(f'{origin}: key {key!r} must have the form "dataset.celltype".')
    return dataset, cell_type


def _rng_for(seed: int, label: str) -> np.random.Generator:
    # Seeding per cell type keeps one cell type's split unchanged when others are added.
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, zlib.crc32(label.encode())])


def _check_cell_types(dataset: PerturbationDataset, cell_types: Sequence[str]) -> None:
    unknown = [c for c in cell_types if c not in dataset.cell_types]
    if unknown or not cell_types:
        raise SplitError(
            f"Unknown cell type(s) {format_list(unknown) or '(none given)'}; "
            f"the data has {format_list(dataset.cell_types)}."
        )


def _hold_out(
    perts: Sequence[str], val_fraction: float, test_fraction: float, rng: np.random.Generator, what: str
) -> dict[str, list[str]]:
    """Seeded val and test lists drawn from ``perts``; at least one perturbation must still train."""
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise SplitError(
            f"val ({val_fraction}) and test ({test_fraction}) fractions must be in [0, 1) and sum below 1."
        )
    n_test = max(1, round(test_fraction * len(perts))) if test_fraction > 0 else 0
    n_val = max(1, round(val_fraction * len(perts))) if val_fraction > 0 else 0
    if n_test + n_val >= len(perts):
        raise SplitError(
            f"{what} has {len(perts)} perturbations: too few to hold out {n_val} for val and {n_test} "
            "for test and still train on some. Lower the fractions."
        )
    shuffled = [perts[i] for i in rng.permutation(len(perts))]
    return {"test": sorted(shuffled[:n_test]), "val": sorted(shuffled[n_test : n_test + n_val])}


def generate_fewshot(
    dataset: PerturbationDataset,
    cell_types: Sequence[str],
    val_fraction: float,
    test_fraction: float,
    seed: int,
    name: str = "data",
) -> Split:
    """Hold out a seeded fraction of each listed cell type's perturbations for val and for test."""
    _check_cell_types(dataset, cell_types)
    fewshot = {
        cell_type: _hold_out(
            dataset.perturbations(cell_type),
            val_fraction,
            test_fraction,
            _rng_for(seed, cell_type),
            f"Cell type {cell_type!r}",
        )
        for cell_type in cell_types
    }
    return Split(name=name, fewshot=fewshot, datasets={name: dataset.source}, training={name: "train"})


def generate_unseen(
    dataset: PerturbationDataset,
    val_fraction: float,
    test_fraction: float,
    seed: int,
    name: str = "data",
) -> Split:
    """Hold out a seeded fraction of the screen's perturbations from EVERY cell type (GEARS-style).

    Written as few-shot entries listing the same perturbations for each cell type, so the file stays
    STATE TOML; no cell of a held-out perturbation trains in any cell type.
    """
    held_out = _hold_out(
        dataset.perturbations(), val_fraction, test_fraction, _rng_for(seed, "\x00unseen"), "The screen"
    )
    fewshot = {}
    for cell_type in dataset.cell_types:
        present = set(dataset.perturbations(cell_type))
        fewshot[cell_type] = {role: [p for p in held_out[role] if p in present] for role in HELD_OUT_ROLES}
    return Split(name=name, fewshot=fewshot, datasets={name: dataset.source}, training={name: "train"})


def generate_zeroshot(
    dataset: PerturbationDataset, cell_type: str | Sequence[str], role: str = "test", name: str = "data"
) -> Split:
    """Hold out whole cell type(s) for ``role`` ("val" or "test")."""
    types = [cell_type] if isinstance(cell_type, str) else list(cell_type)
    _check_cell_types(dataset, types)
    if role not in HELD_OUT_ROLES:
        raise SplitError(f"Zero-shot role must be 'val' or 'test', not {role!r}.")
    if len(set(types)) >= len(dataset.cell_types):
        raise SplitError("A zero-shot split must leave at least one cell type for training.")
    return Split(
        name=name,
        zeroshot={t: role for t in types},
        datasets={name: dataset.source},
        training={name: "train"},
    )
