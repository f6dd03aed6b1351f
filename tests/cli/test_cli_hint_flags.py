"""Every flag an error hint names exists on the command that printed it (issue 14, item 7).

``fails`` (shared by every CLI test through cli_helpers, so all their cases are checked too)
asserts this for every error line; the cases below add bad inputs for each subcommand, in
particular the loader's column and expression hints on ``predict``, which now has those options.
"""

from __future__ import annotations

import anndata as ad
import numpy as np
import pytest

import ptrag.embeddings.annotation as annotation_module
from ptrag.cli.main import main

from .cli_helpers import fails, predict_args, train_args
from .hints import command_options, named_flags

LOADER_FLAGS = {
    "--perturbation-column",
    "--cell-type-column",
    "--batch-column",
    "--control-label",
    "--expression",
}


def test_the_extractor_separates_quoted_commands() -> None:
    line = "ptrag predict: error: x lacks genes (`ptrag embed-genes --coverage`); pass --control-label NT."
    assert named_flags("predict", line) == [("embed-genes", "--coverage"), ("predict", "--control-label")]
    assert named_flags("train", "see /tmp/a--b and non--targeting") == []


@pytest.mark.parametrize("command", ["inspect", "split", "train", "predict", "benchmark"])
def test_every_command_reading_a_screen_has_the_loader_options(command) -> None:
    assert LOADER_FLAGS.issubset(command_options()[command])


def _rename_columns(adata: ad.AnnData) -> None:
    adata.obs = adata.obs.rename(columns={"gene": "sgRNA", "cell_line": "line"})


def _scramble_controls(adata: ad.AnnData) -> None:
    adata.obs["gene"] = adata.obs["gene"].cat.rename_categories({"non-targeting": "scramble"})


def _unnamed_hvg_columns(adata: ad.AnnData) -> None:
    adata.obsm["X_hvg"] = np.asarray(adata.obsm["X_hvg"])[:, :250]  # var no longer names its columns
    adata.var["highly_variable"] = False


@pytest.mark.parametrize(
    ("name", "change", "expected", "fix"),
    [
        ("renamed", _rename_columns, "No perturbation column", ["--perturbation-column", "sgRNA",
                                                                 "--cell-type-column", "line"]),
        ("scramble", _scramble_controls, "No control cells", ["--control-label", "scramble"]),
        ("unnamed", _unnamed_hvg_columns, "Cannot name the 250 columns", ["--expression", "X"]),
    ],
    ids=["columns", "control_label", "expression"],
)  # fmt: skip
def test_predict_hints_name_its_own_options_and_they_work(
    screen, run_dir, variant, tmp_path, capsys, name, change, expected, fix
) -> None:
    path = variant(f"predict_{name}", change)
    line = fails(capsys, predict_args(run_dir, path, tmp_path / "failed"))
    assert expected in line and fix[0] in line
    assert main(predict_args(run_dir, path, tmp_path / "fixed", *fix)) == 0
    assert main(predict_args(run_dir, screen / "data.h5ad", tmp_path / "reference")) == 0
    fixed = ad.read_h5ad(tmp_path / "fixed" / "adata_pred.h5ad")
    reference = ad.read_h5ad(tmp_path / "reference" / "adata_pred.h5ad")
    assert list(fixed.var_names) == list(reference.var_names)
    np.testing.assert_allclose(np.asarray(fixed.X), np.asarray(reference.X), atol=1e-2)


def _disagreeing_target_gene(adata: ad.AnnData) -> None:
    target = adata.obs["gene"].astype(str).to_numpy().copy()
    target[0] = "OTHER"
    adata.obs["target_gene"] = target


@pytest.mark.parametrize("command", ["inspect", "split", "train", "predict", "embed-genes", "benchmark"])
def test_disagreeing_columns_on_every_command(screen, run_dir, variant, tmp_path, capsys, command) -> None:
    path = variant("disagree", _disagreeing_target_gene)
    if command == "benchmark":
        (tmp_path / "bench").mkdir()
        (tmp_path / "bench" / "data.h5ad").symlink_to(path)
        (tmp_path / "bench" / "split.toml").symlink_to(screen / "split.toml")
    argv = {
        "inspect": ["inspect", str(path)],
        "split": ["split", str(path), "--out", str(tmp_path / "split.toml")],
        "train": train_args(screen, data=path, out="run_disagree"),
        "predict": predict_args(run_dir, path, tmp_path / "pred"),
        "embed-genes": ["embed-genes", "--data", str(path), "--out", str(tmp_path / "e.npz")],
        "benchmark": ["benchmark", "--data", str(tmp_path / "bench"), "--out", str(tmp_path / "b"),
                      "--arms", "st", "--set", "train.max_steps=2", "--no-progress"],
    }[command]  # fmt: skip
    line = fails(capsys, argv)
    assert "'gene' and 'target_gene'" in line and "--perturbation-column" in line


def test_embed_genes_hints_when_the_annotation_is_unreachable(tmp_path, capsys, monkeypatch) -> None:
    def no_apt(command: list[str], **_kwargs: object) -> None:
        raise FileNotFoundError(command[0])  # a cluster node without apt-get

    monkeypatch.setattr(annotation_module.subprocess, "run", no_apt)
    monkeypatch.setenv("PTRAG_ANNOTATION_CACHE", str(tmp_path / "empty-cache"))
    genes = tmp_path / "genes.txt"
    genes.write_text("TP53\nNOTAGENE7\n")
    line = fails(capsys, ["embed-genes", "--genes", str(genes), "--out", str(tmp_path / "g.npz")])
    assert "1 gene(s) are not in the bundled table ('NOTAGENE7')" in line
    assert "--annotation-dir" in line and "--skip-unknown" in line


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["embed-genes", "--neighbors", "RPL7", "-k", "0"], "-k must be at least 1"),
        (["embed-genes", "--genes", "{tmp}/none.txt", "--out", "{tmp}/x.npz"], "Cannot read the gene list"),
        (["evaluate", "{tmp}/no_pred"], "adata_pred.h5ad not found"),
        (["benchmark", "--data", "{tmp}", "--out", "{tmp}/b", "--arms", "ptrag"], "include it in --arms"),
        (["simulate", "--preset", "tiny", "--out", "{tmp}"], "--overwrite"),
    ],
    ids=["embed_k", "embed_no_list", "evaluate_empty", "benchmark_arms", "simulate_exists"],
)
def test_other_commands(tmp_path, capsys, argv, expected) -> None:
    (tmp_path / "keep.txt").write_text("mine")
    line = fails(capsys, [a.format(tmp=tmp_path) for a in argv])
    assert expected in line
