"""STATE TOML splits: reading PT-RAG's format, round-trips, roles, validation, generation."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from ptrag.data.loading import load_dataset
from ptrag.data.splits import Split, generate_fewshot, generate_unseen, generate_zeroshot
from ptrag.errors import SplitError

# Same layout as PT-RAG's published datasets/repogle_nadig_k562.toml (multi-line single-quoted lists).
PTRAG_STYLE = """\
# Dataset paths - maps dataset names to their directories
[datasets]
replogle_proper = "/home/PT-RAG/datasets/Replogle_Nadig_dataset"

# Training specifications
[training]
replogle_proper = "train"

# Zeroshot specifications - entire cell types go to val or test
[zeroshot]
"replogle_proper.jurkat" = "val"

# Fewshot specifications - explicit perturbation lists
[fewshot]

[fewshot."replogle_proper.k562"]
val = [
                'G2', 'G3',
            ]
test = [
                'G4', 'G3'
            ]
"""


@pytest.fixture
def dataset(screen_h5ad):
    return load_dataset(screen_h5ad)


def test_reads_ptrag_published_format(tmp_path):
    path = tmp_path / "repogle_nadig_k562.toml"
    path.write_text(PTRAG_STYLE)
    split = Split.read(path)
    assert split.name == "replogle_proper"
    assert split.datasets == {"replogle_proper": "/home/PT-RAG/datasets/Replogle_Nadig_dataset"}
    assert split.training == {"replogle_proper": "train"}
    assert split.zeroshot == {"jurkat": "val"}
    assert split.fewshot == {"k562": {"val": ("G2", "G3"), "test": ("G4", "G3")}}
    assert split.role("k562", "G2") == "val"
    assert split.role("k562", "G3") == "test"  # in both lists: test wins
    assert split.role("k562", "G1") == "train"
    assert split.role("hepg2", "G4") == "train"
    assert split.role("jurkat", "G1") == "val"


def test_round_trip_is_exact(tmp_path):
    split = Split(
        name="my.screen",
        fewshot={"k562": {"val": ["B", "A"], "test": ["C"]}, "rpe 1": {"val": [], "test": ['Z"q']}},
        zeroshot={"hepg2": "test"},
        datasets={"my.screen": "/data/x.h5ad"},
        training={"my.screen": "train"},
    )
    path = tmp_path / "split.toml"
    split.write(path)
    again = Split.read(path)
    assert again == split
    assert again.fewshot["k562"]["val"] == ("B", "A")  # order kept
    again.write(tmp_path / "again.toml")
    assert (tmp_path / "again.toml").read_text() == path.read_text()


def test_roles_per_cell(dataset):
    split = Split(name="d", fewshot={"k562": {"val": ["G1"], "test": ["G3"]}}, zeroshot={"rpe1": "test"})
    roles = split.roles(dataset)
    obs = dataset.obs
    assert roles.shape == (dataset.n_cells,)
    assert set(roles[dataset.is_control]) == {"control"}
    assert set(roles[((obs.cell_type == "k562") & (obs.perturbation == "G1")).to_numpy()]) == {"val"}
    assert set(roles[((obs.cell_type == "hepg2") & (obs.perturbation == "G1")).to_numpy()]) == {"train"}
    counts = Counter(roles.tolist())
    # rpe1 has 6 perturbations × 8 cells, all test; k562 G3 adds 8 more test cells.
    assert counts == {"control": 96, "test": 56, "val": 8, "train": 128}
    assert len(split.groups(dataset, "test")) == 7


def test_validate_lists_unknown_names(dataset):
    Split(name="d", fewshot={"k562": {"val": ["G1"], "test": []}}).validate(dataset)
    with pytest.raises(SplitError) as info:
        Split(name="d", fewshot={"k562": {"val": ["G1", "NOPE"], "test": ["G3", "ALSO_NOPE"]}}).validate(
            dataset
        )
    assert "NOPE (k562 val)" in str(info.value) and "ALSO_NOPE (k562 test)" in str(info.value)
    assert "2 perturbation(s)" in str(info.value)
    # k562 skips G2 in the fixture: a perturbation measured only in other cell types is unknown here.
    with pytest.raises(SplitError, match="G2 \\(k562 val\\)"):
        Split(name="d", fewshot={"k562": {"val": ["G2"], "test": []}}).validate(dataset)
    with pytest.raises(SplitError) as info:
        Split(name="d", zeroshot={"hela": "test"}).validate(dataset)
    assert "'hela'" in str(info.value) and "'k562'" in str(info.value)


def test_fewshot_generation_is_seeded(dataset):
    first = generate_fewshot(dataset, ["k562", "rpe1"], 0.2, 0.34, seed=3, name="screen")
    again = generate_fewshot(dataset, ["k562", "rpe1"], 0.2, 0.34, seed=3, name="screen")
    assert first == again
    others = {
        generate_fewshot(dataset, ["k562"], 0.2, 0.34, seed=s).fewshot["k562"]["test"] for s in range(8)
    }
    assert len(others) > 1
    for cell_type in ("k562", "rpe1"):
        val, test = first.fewshot[cell_type]["val"], first.fewshot[cell_type]["test"]
        assert (len(val), len(test)) == (1, 2)
        assert not set(val) & set(test)
        assert set(val) | set(test) <= set(dataset.perturbations(cell_type))
    first.validate(dataset)
    # Held-out k562 perturbations stay trainable in other lines (few-shot).
    held = first.fewshot["k562"]["test"][0]
    assert first.role("k562", held) == "test" and first.role("hepg2", held) == "train"


def test_unseen_split_holds_perturbations_out_of_every_cell_type(dataset):
    split = generate_unseen(dataset, 0.15, 0.3, seed=1, name="screen")
    assert split == generate_unseen(dataset, 0.15, 0.3, seed=1, name="screen")
    roles = split.roles(dataset)
    perts = dataset.obs["perturbation"].astype(str).to_numpy()
    # 7 targets in the fixture screen (G0..G6): round(0.3 * 7) = 2 test, round(0.15 * 7) = 1 val.
    test = {p for p, r in zip(perts, roles, strict=True) if r == "test"}
    val = {p for p, r in zip(perts, roles, strict=True) if r == "val"}
    assert (len(test), len(val)) == (2, 1) and not test & val
    # No cell of a held-out perturbation trains anywhere: the GEARS-style unseen setting.
    trained = {p for p, r in zip(perts, roles, strict=True) if r == "train"}
    assert not (test | val) & trained
    split.validate(dataset)
    with pytest.raises(SplitError, match="too few"):
        generate_unseen(dataset, 0.45, 0.5, seed=0)


def test_fewshot_rejects_bad_fractions_and_types(dataset):
    with pytest.raises(SplitError, match="fractions"):
        generate_fewshot(dataset, ["k562"], 0.6, 0.5, seed=0)
    with pytest.raises(SplitError, match="too few"):
        generate_fewshot(dataset, ["k562"], 0.45, 0.45, seed=0)
    with pytest.raises(SplitError, match="'hela'"):
        generate_fewshot(dataset, ["hela"], 0.1, 0.1, seed=0)


def test_zeroshot_generation(dataset, tmp_path):
    split = generate_zeroshot(dataset, "jurkat", role="test", name="screen")
    assert split.zeroshot == {"jurkat": "test"} and split.fewshot == {}
    roles = split.roles(dataset)
    jurkat = (dataset.obs.cell_type == "jurkat").to_numpy()
    assert set(roles[jurkat & ~dataset.is_control]) == {"test"}
    assert set(roles[~jurkat & ~dataset.is_control]) == {"train"}
    split.write(tmp_path / "z.toml")
    assert '"screen.jurkat" = "test"' in (tmp_path / "z.toml").read_text()
    assert Split.read(tmp_path / "z.toml") == split
    with pytest.raises(SplitError):
        generate_zeroshot(dataset, ["hepg2", "jurkat", "k562", "rpe1"])


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("[fewshot]\nx = 3\n", "dataset.celltype|must be a table"),
        ('[zeroshot]\n"d.k562" = "train"\n', "must be 'val' or 'test'"),
        ('[fewshot."d.k562"]\nval = [1, 2]\n', "list of perturbation names"),
        ('[fewshot."d.k562"]\ntrain = ["A"]\n', "only val and test"),
        ("[splits]\n", "unknown section"),
        ('[zeroshot]\n"a.x" = "test"\n"b.y" = "val"\n', "several datasets"),
        ("[datasets\n", "not valid TOML"),
        ('[zeroshot]\nnodot = "test"\n', "dataset.celltype"),
    ],
)
def test_malformed_split_files(tmp_path, text, match):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(SplitError, match=match):
        Split.read(path)


def test_missing_split_file(tmp_path):
    with pytest.raises(SplitError, match="does not exist"):
        Split.read(tmp_path / "none.toml")


def test_roles_dtype_is_str(dataset):
    roles = Split(name="d").roles(dataset)
    assert roles.dtype.kind == "U" and np.all((roles == "train") | (roles == "control"))
