"""Bad inputs at the command line: exit status 2, one ``ptrag <cmd>: error: ...`` line, no traceback.

Loader-, config-, io- and checkpoint-level errors have their own unit tests (see docs/reliability.md);
these check that the same problems reach a user of ``ptrag`` as one clear line, and cover the cases
that only exist at the command line (gene lists of a checkpoint vs. new data, query files, splits
that do not fit the data, write failures while predicting).
"""

from __future__ import annotations

import errno
import os
import shutil

import anndata as ad
import h5py
import numpy as np
import pytest

from ptrag import Model
from ptrag.cli.main import main

from .cli_helpers import fails, predict_args, snapshot, train_args

# --- configuration and output directories ---------------------------------------------------------


def test_train_unknown_set_key_names_the_key_and_the_closest_valid_ones(screen, capsys) -> None:
    line = fails(capsys, [*train_args(screen, out="typo"), "--set", "train.max_step=5"])
    assert "Unknown config key 'train.max_step'" in line
    assert "Did you mean 'max_steps'" in line
    assert not (screen.parent / "typo").exists()


def test_train_refuses_an_existing_run_directory(screen, run_dir, capsys) -> None:
    checkpoint = run_dir / "checkpoints" / "last.ckpt"
    before = checkpoint.read_bytes()
    args = train_args(screen)
    args[args.index("--out") + 1] = str(run_dir)
    line = fails(capsys, args)
    assert str(run_dir) in line and "--resume" in line and "--overwrite" in line
    assert checkpoint.read_bytes() == before


def test_predict_refuses_an_existing_output_directory(screen, run_dir, tmp_path, capsys) -> None:
    out = tmp_path / "pred"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    line = fails(capsys, predict_args(run_dir, screen / "data.h5ad", out))
    assert "already exists and is not empty" in line and "--overwrite" in line
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_predict_out_that_is_a_file(screen, run_dir, tmp_path, capsys) -> None:
    out = tmp_path / "pred"
    out.write_text("mine")
    line = fails(capsys, predict_args(run_dir, screen / "data.h5ad", out))
    assert f"Output path {out} exists and is not a directory" in line
    assert out.read_text() == "mine"


@pytest.mark.parametrize(
    ("errno_code", "patched", "expected"),
    [
        (errno.ENOSPC, "write_h5ad", "No space left on the device while writing"),
        (errno.EROFS, "mkstemp", "Read-only file system. Choose a writable --out directory"),
    ],
    ids=["disk_full", "read_only"],
)
def test_predict_write_failure_is_one_line_and_leaves_no_partial_file(
    screen, run_dir, tmp_path, capsys, monkeypatch, errno_code, patched, expected
) -> None:
    import tempfile

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise OSError(errno_code, os.strerror(errno_code))

    if patched == "write_h5ad":
        monkeypatch.setattr(ad.AnnData, "write_h5ad", refuse)
    else:
        monkeypatch.setattr(tempfile, "mkstemp", refuse)
    out = tmp_path / "pred"
    line = fails(capsys, predict_args(run_dir, screen / "data.h5ad", out))
    assert expected in line and "adata_pred.h5ad" in line
    assert list(tmp_path.iterdir()) == []  # no output, no temporary file, no staging directory


# --- checkpoints ------------------------------------------------------------------------------------


def test_predict_with_a_truncated_checkpoint(screen, run_dir, tmp_path, capsys) -> None:
    broken = tmp_path / "broken_run"
    shutil.copytree(run_dir, broken)
    for name in ("best", "last"):  # predict reads best.ckpt unless told --checkpoint last
        checkpoint = broken / "checkpoints" / f"{name}.ckpt"
        checkpoint.write_bytes(checkpoint.read_bytes()[:4096])
        argv = predict_args(broken, screen / "data.h5ad", tmp_path / "pred", "--checkpoint", name)
        line = fails(capsys, argv)
        assert str(checkpoint) in line and "corrupted or truncated" in line
        assert not (tmp_path / "pred").exists()


def test_predict_from_a_missing_run_directory(screen, tmp_path, capsys) -> None:
    line = fails(capsys, predict_args(tmp_path / "no_run", screen / "data.h5ad", tmp_path / "pred"))
    assert "does not exist" in line and "no_run" in line


# --- genes of new data vs. the checkpoint -----------------------------------------------------------


def test_predict_names_missing_and_extra_genes(screen, run_dir, variant, tmp_path, capsys) -> None:
    trained_genes = list(Model.load(run_dir).genes)

    def rename_two(adata: ad.AnnData) -> None:
        names = list(adata.var_names)
        names[0], names[5] = "EXTRA1", "EXTRA2"
        adata.var_names = names

    path = variant("renamed_genes", rename_two, plain=True)
    line = fails(capsys, predict_args(run_dir, path, tmp_path / "pred"))
    assert f"lacks 2 of the {len(trained_genes)} genes" in line
    assert repr(trained_genes[0]) in line and repr(trained_genes[5]) in line
    assert "'EXTRA1'" in line and "'EXTRA2'" in line and "Model.load(RUN).genes" in line


def test_predict_on_reordered_genes_gives_the_same_predictions(
    screen, run_dir, variant, tmp_path, capsys
) -> None:
    genes = list(Model.load(run_dir).genes)
    order = np.random.default_rng(1).permutation(len(genes))
    path = variant("reordered_genes", lambda adata: adata[:, order].copy(), plain=True)
    assert main(predict_args(run_dir, screen / "data.h5ad", tmp_path / "original")) == 0
    assert main(predict_args(run_dir, path, tmp_path / "reordered")) == 0
    original = ad.read_h5ad(tmp_path / "original" / "adata_pred.h5ad")
    reordered = ad.read_h5ad(tmp_path / "reordered" / "adata_pred.h5ad")
    assert list(reordered.var_names) == genes
    np.testing.assert_array_equal(reordered.X, original.X)
    assert reordered.obs.equals(original.obs)


# --- data that cannot be used ---------------------------------------------------------------------


def _rename_perturbation_column(adata: ad.AnnData) -> None:
    adata.obs = adata.obs.rename(columns={"gene": "sgRNA"})


def _rename_controls(adata: ad.AnnData) -> None:
    adata.obs["gene"] = adata.obs["gene"].cat.rename_categories({"non-targeting": "scramble"})


def _nan_value(adata: ad.AnnData) -> None:
    adata.obsm["X_hvg"][17, 3] = np.nan


def _duplicate_cell_name(adata: ad.AnnData) -> None:
    names = list(adata.obs_names)
    names[9] = names[1]
    adata.obs_names = names


def _drop_rpe1_controls(adata: ad.AnnData) -> ad.AnnData:
    obs = adata.obs
    return adata[~((obs["cell_line"] == "rpe1") & (obs["gene"] == "non-targeting")).to_numpy()].copy()


@pytest.mark.parametrize(
    ("name", "change", "expected"),
    [
        ("no_pert_column", _rename_perturbation_column, ["No perturbation column", "'sgRNA'"]),
        ("no_controls", _rename_controls, ["No control cells", "'scramble (321 cells)'", "--control-label"]),
        ("nan", _nan_value, ["NaN or infinite", "row 17"]),
        ("dup_cells", _duplicate_cell_name, ["Duplicated cell names", "'cell0001'"]),
        ("rpe1_no_controls", _drop_rpe1_controls, ["'rpe1' have no control cells"]),
    ],
    ids=["no_pert_column", "no_controls", "nan", "dup_cells", "rpe1_no_controls"],
)
def test_train_rejects_unusable_data(screen, variant, capsys, name, change, expected) -> None:
    line = fails(capsys, train_args(screen, data=variant(name, change), out=f"run_{name}"))
    for text in expected:
        assert text in line
    assert not (screen.parent / f"run_{name}").exists()


def test_unknown_control_label_lists_the_labels_present(screen, capsys) -> None:
    line = fails(capsys, ["inspect", str(screen / "data.h5ad"), "--control-label", "NT"])
    assert "'NT'" in line and "'non-targeting (321 cells)'" in line


@pytest.mark.parametrize("command", ["inspect", "train"])
@pytest.mark.parametrize("kind", ["csv", "hdf5"])
def test_a_file_that_is_not_anndata(screen, tmp_path, capsys, command, kind) -> None:
    path = tmp_path / "table.h5ad"
    if kind == "csv":
        path.write_text("cell,gene\nA,B\n")
    else:
        with h5py.File(path, "w") as handle:
            handle["matrix"] = np.zeros((3, 3))
    argv = ["inspect", str(path)] if command == "inspect" else train_args(screen, data=path, out="run_csv")
    line = fails(capsys, argv)
    assert str(path) in line
    assert ("not an HDF5 file" if kind == "csv" else "HDF5 but not AnnData") in line


def test_raw_counts_are_normalised_and_unlogged_values_are_flagged(screen, variant, capsys) -> None:
    def counts_in_x(adata: ad.AnnData) -> None:
        del adata.obsm["X_hvg"]
        adata.X = adata.layers.pop("counts").astype(np.float32)

    def normalised_not_logged(adata: ad.AnnData) -> None:
        counts = np.asarray(adata.layers.pop("counts").todense(), dtype=np.float32)
        del adata.obsm["X_hvg"]
        adata.X = counts / counts.sum(axis=1, keepdims=True) * 1e4

    assert main(["inspect", str(variant("counts", counts_in_x))]) == 0
    out = capsys.readouterr().out
    assert "X holds raw counts (integer values); preprocessed with scanpy: normalize_total, log1p" in out
    assert main(["inspect", str(variant("not_logged", normalised_not_logged))]) == 0
    out = capsys.readouterr().out
    assert "larger than log1p data usually has; check that it is log1p-normalised" in out


def test_groups_smaller_than_the_set_size_and_control_only_cell_types_are_warned(
    screen, variant, capsys
) -> None:
    def rpe1_only_controls(adata: ad.AnnData) -> ad.AnnData:
        obs = adata.obs
        return adata[~((obs["cell_line"] == "rpe1") & (obs["gene"] != "non-targeting")).to_numpy()].copy()

    assert main(["inspect", str(variant("rpe1_controls_only", rpe1_only_controls)), "--set-len", "64"]) == 0
    out = capsys.readouterr().out
    assert "groups have fewer cells than the set size 64" in out and "sampled with replacement" in out
    assert "'rpe1' have only control cells" in out
    assert "34 of 34 (cell type, perturbation) groups" in out  # only k562's groups remain


# --- perturbations, embeddings and splits ----------------------------------------------------------


def test_perturbation_without_an_embedding_fails_and_trains_with_drop(screen, variant, capsys) -> None:
    def rename(adata: ad.AnnData) -> None:
        adata.obs["gene"] = adata.obs["gene"].cat.rename_categories({"PSMA4": "NOTAGENE123"})

    path = variant("notagene", rename)
    line = fails(capsys, train_args(screen, data=path, out="run_notagene"))
    assert "no embedding" in line and "'NOTAGENE123'" in line and "'drop'" in line
    run = screen.parent / "run_notagene_drop"
    argv = train_args(screen, data=path, out=run.name)
    with pytest.warns(UserWarning, match="NOTAGENE123"):
        assert main([*argv, "--set", "embedding.missing=drop"]) == 0
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert "NOTAGENE123" not in Model.load(run).perturbations


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ('"CDC23"', '"NOTAPERT1"', "'NOTAPERT1 (k562 test)'"),
        ("simulated.k562", "simulated.hela", "cell type(s) not in the data: 'hela'"),
    ],
    ids=["perturbation", "cell_type"],
)
def test_split_naming_unknown_perturbations_or_cell_types(
    screen, tmp_path, capsys, old, new, expected
) -> None:
    text = (screen / "split.toml").read_text()
    assert old in text
    split = tmp_path / "split.toml"
    split.write_text(text.replace(old, new))
    line = fails(capsys, train_args(screen, split=split, out="run_bad_split"))
    assert expected in line and "Split 'simulated'" in line


def test_predict_split_file_naming_unknown_perturbations(screen, run_dir, tmp_path, capsys) -> None:
    split = tmp_path / "split.toml"
    split.write_text((screen / "split.toml").read_text().replace('"CDC23"', '"NOTAPERT1"'))
    argv = predict_args(run_dir, screen / "data.h5ad", tmp_path / "pred", "--split-file", str(split))
    assert "'NOTAPERT1 (k562 test)'" in fails(capsys, argv)


# --- in-silico query files ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("celltype,gene\nk562,RPL10\n", "needs columns cell_type and perturbation"),
        ("cell_type,perturbation,n_cells\n", "has a header but no queries"),
        ("cell_type,perturbation,n_cells\nk562,RPL10,5\nk562,RPL11,0\n", "bad value(s) '0' on line(s) 3"),
        ("cell_type,perturbation,n_cells\nk562,RPL10,abc\n", "bad value(s) 'abc' on line(s) 2"),
        ("cell_type,perturbation\nk562,\n", "empty cell_type or perturbation on line(s) 2"),
        ("cell_type,perturbation\nhela,RPL10\n", "No control cells for the query cell type(s) 'hela'"),
        ("cell_type,perturbation\nk562,NOTAGENE123\n", "'NOTAGENE123'"),
        ("cell_type,perturbation,n_cells\nk562,RPL10,1e9\n", "GB of memory for the predicted cells"),
        (
            "cell_type,perturbation\nk562,RPL10\nrpe1,RPL10\nk562,RPL10\n",
            "more than once: 'k562/RPL10' on line(s) 2, 4",
        ),
    ],
    ids=[
        "wrong_columns",
        "no_rows",
        "zero_cells",
        "non_numeric_cells",
        "empty_field",
        "no_controls",
        "no_embedding",
        "billion_cells",
        "duplicates",
    ],
)
def test_bad_query_files(screen, run_dir, tmp_path, capsys, body, expected) -> None:
    queries = tmp_path / "queries.csv"
    queries.write_text(body)
    argv = predict_args(run_dir, screen / "data.h5ad", tmp_path / "pred", "--queries", str(queries))
    assert expected in fails(capsys, argv)


def test_a_billion_query_cells_are_refused_before_the_data_is_read(
    screen, run_dir, tmp_path, capsys, monkeypatch
) -> None:
    queries = tmp_path / "queries.csv"
    queries.write_text("cell_type,perturbation,n_cells\nk562,RPL10,1e9\n")
    monkeypatch.setattr("ptrag.api.Model.load_data", lambda *a, **k: pytest.fail("data read"))
    argv = predict_args(run_dir, screen / "data.h5ad", tmp_path / "pred", "--queries", str(queries))
    line = fails(capsys, argv)
    genes = len(Model.load(run_dir).genes)
    needs = f"needs {4e9 * genes / 1e9:.1f} GB"
    assert f"Predicting 1,000,000,000 cells (n_cells summed over 1 queries) {needs}" in line


@pytest.mark.parametrize("kind", ["queries", "split"])
def test_a_full_disk_is_refused_before_the_prediction_and_keeps_the_old_output(
    screen, run_dir, tmp_path, capsys, monkeypatch, kind
) -> None:
    out = tmp_path / "pred"
    queries = tmp_path / "queries.csv"
    queries.write_text("cell_type,perturbation,n_cells\nk562,RPL10,50\n")
    extra = ["--queries", str(queries)] if kind == "queries" else []
    assert main(predict_args(run_dir, screen / "data.h5ad", out, *extra)) == 0
    before = snapshot(out)
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr("ptrag.io.shutil.disk_usage", lambda path: usage._replace(free=1000))
    monkeypatch.setattr("ptrag.api.Model.predict", lambda *a, **k: pytest.fail("predicted"))
    line = fails(capsys, predict_args(run_dir, screen / "data.h5ad", out, *extra, "--overwrite"))
    assert f"Not enough space for {out}: the prediction needs about" in line
    assert "has 1.0 KB free (the old output stays until the new one is complete)" in line
    assert snapshot(out) == before


# --- evaluation -------------------------------------------------------------------------------------


def test_evaluate_a_directory_without_adata_real(screen, run_dir, tmp_path, capsys) -> None:
    pred_dir = tmp_path / "pred"
    assert main(predict_args(run_dir, screen / "data.h5ad", pred_dir)) == 0
    (pred_dir / "adata_real.h5ad").unlink()
    line = fails(capsys, ["evaluate", str(pred_dir)])
    assert "adata_real.h5ad not found" in line and "ptrag predict" in line
    assert not (pred_dir / "eval").exists()
