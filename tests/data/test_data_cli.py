"""`ptrag inspect` and `ptrag split` as a user runs them."""

from __future__ import annotations

import re

import numpy as np

from ptrag.cli.main import main
from ptrag.data.loading import load_dataset
from ptrag.data.splits import Split


def test_inspect_reports_replogle_schema(screen_factory, write_screen, capsys):
    adata = screen_factory(n_perturbations=5, cells_per_perturbation=9, n_controls=30, n_batches=3)
    # Give each line a different number of controls so the counts in the table are checked for real.
    keep = ~((adata.obs["cell_line"] == "k562") & (adata.obs["gene"] == "non-targeting")).to_numpy()
    keep[np.flatnonzero(~keep)[:21]] = True  # k562 keeps 21 of its 30 controls
    path = write_screen(adata[keep].copy())
    assert main(["inspect", str(path), "--set-len", "8"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"Cells:\s+291\b", out)
    assert re.search(r"Genes:\s+40\b.*X_hvg", out)
    assert "perturbation='gene'" in out and "cell type='cell_line'" in out and "batch='gem_group'" in out
    assert "'non-targeting' (111 cells)" in out
    assert "Cell types:  4 (hepg2, jurkat, k562, rpe1)" in out
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.split()[:1] and
            line.split()[0] in ("hepg2", "jurkat", "k562", "rpe1")}  # fmt: skip
    assert len(rows) == 4
    # cell type, cells, perturbations, median cells/pert, controls, batches, min/med/max, batches < S
    assert rows["hepg2"][1:6] == ["75", "5", "9", "30", "3"]
    assert rows["k562"][1:6] == ["66", "5", "9", "21", "3"]
    assert rows["k562"][6] == "7/7/7"
    assert rows["k562"][7] == "3"  # all 3 batches have fewer than 8 controls
    assert "Warnings:    none" in out


def test_inspect_shows_warnings_and_per_batch(write_screen, capsys):
    path = write_screen(cells_per_perturbation=4)
    assert main(["inspect", str(path), "--set-len", "6", "--per-batch"]) == 0
    out = capsys.readouterr().out
    assert "Control cells per (cell type, batch):" in out
    assert "hepg2_0" in out and "with replacement" in out


def test_inspect_warns_with_the_set_size_training_would_use(screen_factory, write_screen, capsys):
    # 40 cells per perturbation: enough for the paper's S = 64? no; for cpu-small's S = 32, yes.
    path = write_screen(screen_factory(cells_per_perturbation=40, n_controls=200, n_batches=1))

    def set_size_warning(*options: str) -> str:
        assert main(["inspect", str(path), *options]) == 0
        out = capsys.readouterr().out
        return " ".join(re.findall(r"set size (\d+)", out)) + ("" if "fewer cells" in out else " none")

    from ptrag.config import DEFAULT_PRESET, load_config

    assert load_config(DEFAULT_PRESET).train.cell_set_len == 32
    assert set_size_warning() == " none"  # the default preset's 32, not the schema's 64
    assert set_size_warning("--config", "paper") == "64"
    assert set_size_warning("--set", "train.cell_set_len=48") == "48"
    assert set_size_warning("--set-len", "50") == "50"


def test_inspect_bad_file_exits_2(tmp_path, capsys):
    bad = tmp_path / "x.h5ad"
    bad.write_text("nope")
    assert main(["inspect", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "not an HDF5 file" in err and "Traceback" not in err


def test_inspect_override_options(screen_factory, write_screen, capsys):
    adata = screen_factory(control_label="scr")
    adata.obs = adata.obs.rename(columns={"gene": "guide", "cell_line": "line", "gem_group": "lane"})
    path = write_screen(adata)
    assert main(["inspect", str(path)]) == 2
    assert "No perturbation column" in capsys.readouterr().err
    args = ["inspect", str(path), "--perturbation-column", "guide", "--cell-type-column", "line",
            "--batch-column", "lane", "--control-label", "scr"]  # fmt: skip
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "perturbation='guide'" in out and "batch='lane'" in out and "'scr' (96 cells)" in out


def test_split_command(screen_h5ad, tmp_path, capsys):
    out = tmp_path / "split.toml"
    args = ["split", str(screen_h5ad), "--mode", "fewshot", "--cell-types", "k562", "rpe1",
            "--val-fraction", "0.2", "--test-fraction", "0.34", "--seed", "5", "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    split = Split.read(out)
    assert sorted(split.fewshot) == ["k562", "rpe1"]
    assert all(len(v["test"]) == 2 and len(v["val"]) == 1 for v in split.fewshot.values())
    split.validate(load_dataset(screen_h5ad))
    assert "train 18, val 2, test 4" in capsys.readouterr().out
    assert main(args) == 2  # exists, no --overwrite
    assert "--overwrite" in capsys.readouterr().err
    first = out.read_text()
    assert main([*args, "--overwrite"]) == 0
    assert out.read_text() == first  # same seed, same file

    zero = tmp_path / "zero.toml"
    assert (
        main(["split", str(screen_h5ad), "--mode", "zeroshot", "--cell-types", "jurkat", "--out", str(zero)])
        == 0
    )
    assert Split.read(zero).zeroshot == {"jurkat": "test"}
    assert main(["split", str(screen_h5ad), "--mode", "zeroshot", "--out", str(tmp_path / "z2.toml")]) == 2

    unseen = tmp_path / "unseen.toml"
    assert main(["split", str(screen_h5ad), "--mode", "unseen", "--out", str(unseen)]) == 0
    held = Split.read(unseen).fewshot
    # Every cell type lists the same held-out perturbations (where it has them).
    assert sorted(held) == ["hepg2", "jurkat", "k562", "rpe1"]
    assert len({p for lists in held.values() for p in lists["test"]}) == 1  # round(0.2 * 7)
    assert main(["split", str(screen_h5ad), "--mode", "unseen", "--cell-types", "k562",
                 "--out", str(tmp_path / "u2.toml")]) == 2  # fmt: skip
