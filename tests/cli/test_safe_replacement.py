"""Safe replacement: every command writes beside its output and replaces it only after success.

For each command an old output exists and ``--overwrite`` is given; the new run fails part-way (bad
input, a crash while fitting, a full disk). The old output must be byte for byte what it was, with
no staging or partial directory left beside it, and the failure must be one line with exit 2.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import anndata as ad
import numpy as np
import pytest

from ptrag.cli.main import main

from .cli_helpers import TINY_MODEL, fails, predict_args, snapshot, train_args


@pytest.fixture
def old_run(run_dir: Path, tmp_path: Path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    return run


def leftovers(path: Path) -> list[str]:
    """Names beside ``path`` other than its own: staging, partial or temporary files."""
    return sorted(p.name for p in path.parent.iterdir() if p.name != path.name)


def test_train_that_fails_while_fitting_leaves_the_old_run(screen, old_run, capsys, monkeypatch) -> None:
    from ptrag.training.module import PerturbationLightningModule

    before = snapshot(old_run)
    original = PerturbationLightningModule.distribution
    calls = {"n": 0}

    def poisoned(self, predicted, batch):
        calls["n"] += 1
        return original(self, predicted, batch) * (float("nan") if calls["n"] > 3 else 1.0)

    monkeypatch.setattr(PerturbationLightningModule, "distribution", poisoned)
    argv = [*train_args(screen, out="unused"), "--overwrite"]
    argv[argv.index("--out") + 1] = str(old_run)
    assert "became nan at step 3" in fails(capsys, argv)
    assert snapshot(old_run) == before
    # The failed attempt is kept beside the run as the partial one: --resume or --overwrite decide.
    assert leftovers(old_run) == [".run.partial"]


def test_train_with_a_full_disk_at_checkpoint_save_is_one_line(
    screen, old_run, capsys, monkeypatch
) -> None:
    """A real ENOSPC from the kernel: torch writes the checkpoint into /dev/full."""
    import ptrag.run.checkpoint as checkpoint_module

    before = snapshot(old_run)
    def full_disk(path: Path, mode: str):  # the file object torch.save writes into
        return open("/dev/full", mode)

    monkeypatch.setattr(checkpoint_module, "open", full_disk, raising=False)
    argv = [*train_args(screen, out="unused"), "--overwrite", "--set", "train.checkpoint_every=2"]
    argv[argv.index("--out") + 1] = str(old_run)
    line = fails(capsys, argv)
    assert "No space left on the device while writing" in line and "last.ckpt" in line
    assert snapshot(old_run) == before


def test_predict_with_genes_the_model_lacks_leaves_the_old_predictions(
    screen, run_dir, variant, tmp_path, capsys
) -> None:
    out = tmp_path / "pred"
    assert main(predict_args(run_dir, screen / "data.h5ad", out)) == 0
    before = snapshot(out)

    def rename_two(adata: ad.AnnData) -> None:
        adata.var_names = ["EXTRA1", "EXTRA2", *adata.var_names[2:]]

    bad = variant("two_renamed_genes", rename_two, plain=True)
    assert "lacks 2 of the" in fails(capsys, predict_args(run_dir, bad, out, "--overwrite"))
    assert snapshot(out) == before and leftovers(out) == []


def test_predict_failing_mid_write_leaves_the_old_predictions(
    screen, run_dir, tmp_path, capsys, monkeypatch
) -> None:
    out = tmp_path / "pred"
    assert main(predict_args(run_dir, screen / "data.h5ad", out)) == 0
    before = snapshot(out)
    original = ad.AnnData.write_h5ad
    written: list[str] = []

    def second_file_fails(self, path, *args, **kwargs):  # adata_pred is written, adata_real is not
        if written:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        written.append(str(path))
        return original(self, path, *args, **kwargs)

    monkeypatch.setattr(ad.AnnData, "write_h5ad", second_file_fails)
    line = fails(capsys, predict_args(run_dir, screen / "data.h5ad", out, "--overwrite"))
    assert "No space left" in line and "adata_real.h5ad" in line
    assert snapshot(out) == before and leftovers(out) == []


def test_evaluate_failing_mid_write_leaves_the_old_results(
    screen, run_dir, tmp_path, capsys, monkeypatch
) -> None:
    import ptrag.evaluation

    pred = tmp_path / "pred"
    assert main(predict_args(run_dir, screen / "data.h5ad", pred)) == 0
    assert main(["evaluate", str(pred), "--no-de"]) == 0
    before = snapshot(pred / "eval")

    def half_written(result, out_dir):
        (Path(out_dir) / "results.csv").write_text("partial")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(Path(out_dir) / "agg_results.csv"))

    monkeypatch.setattr(ptrag.evaluation, "write_results", half_written)
    line = fails(capsys, ["evaluate", str(pred), "--no-de", "--overwrite"])
    assert "No space left on the device" in line
    assert snapshot(pred / "eval") == before and leftovers(pred / "eval") == sorted(
        p.name for p in pred.iterdir() if p.name != "eval"
    )


def test_benchmark_failing_after_it_started_leaves_the_old_output(screen, tmp_path, capsys) -> None:
    out = tmp_path / "bench"
    out.mkdir()
    (out / "summary.json").write_text('{"old": true}')
    data = tmp_path / "data_without_split"
    data.mkdir()
    (data / "data.h5ad").symlink_to(screen / "data.h5ad")
    argv = ["benchmark", "--data", str(data), "--out", str(out), "--overwrite", *TINY_MODEL[2:]]
    line = fails(capsys, argv)
    assert "split.toml is missing" in line
    assert snapshot(out) == {"summary.json": b'{"old": true}'} and leftovers(out) == ["data_without_split"]


def test_benchmark_rejects_an_unknown_arm_before_any_work(tmp_path, capsys) -> None:
    line = fails(capsys, ["benchmark", "--arms", "st,foo", "--out", str(tmp_path / "bench")])
    assert "Unknown arm 'foo'" in line and "'st_onehot'" in line and "'ptrag_paper'" in line
    assert list(tmp_path.iterdir()) == []


def test_simulate_failing_at_the_report_leaves_the_old_screen(tmp_path, capsys, monkeypatch) -> None:
    import ptrag.simulation.realism

    out = tmp_path / "sim"
    out.mkdir()
    (out / "data.h5ad").write_bytes(b"old screen")

    def no_space(out_dir, embeddings=None):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(Path(out_dir) / "realism.json"))

    monkeypatch.setattr(ptrag.simulation.realism, "write_realism_report", no_space)
    argv = ["simulate", "--preset", "tiny", "--out", str(out), "--overwrite", "--report", "--quiet"]
    assert "No space left on the device" in fails(capsys, argv)
    assert snapshot(out) == {"data.h5ad": b"old screen"} and leftovers(out) == []


def test_split_that_cannot_be_made_leaves_the_old_split_file(screen, tmp_path, capsys) -> None:
    out = tmp_path / "split.toml"
    out.write_text("# my split\n")
    argv = ["split", str(screen / "data.h5ad"), "--val-fraction", "0.6", "--test-fraction", "0.5"]
    assert "must be in [0, 1) and sum below 1" in fails(capsys, [*argv, "--out", str(out), "--overwrite"])
    assert out.read_text() == "# my split\n" and leftovers(out) == []


def test_embed_genes_that_fails_leaves_the_old_table(tmp_path, capsys, monkeypatch) -> None:
    import ptrag.embeddings.annotation as annotation_module

    def no_apt(command: list[str], **_kwargs: object) -> None:
        raise FileNotFoundError(command[0])  # a machine without apt-get: NOTAGENE7 cannot be built

    monkeypatch.setattr(annotation_module.subprocess, "run", no_apt)
    monkeypatch.setenv("PTRAG_ANNOTATION_CACHE", str(tmp_path / "empty-cache"))
    genes = tmp_path / "genes.txt"
    genes.write_text("TP53\nNOTAGENE7\n")
    out = tmp_path / "genes.npz"
    np.savez(out, symbols=np.array(["OLD"]))
    before = out.read_bytes()
    argv = ["embed-genes", "--genes", str(genes), "--out", str(out), "--overwrite", "--no-cache"]
    assert "'NOTAGENE7'" in fails(capsys, argv)
    assert out.read_bytes() == before and leftovers(out) == ["empty-cache", "genes.txt"]  # the test's inputs
