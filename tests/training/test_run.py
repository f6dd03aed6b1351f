"""Run directories, checkpoints, NaN guards and reproducibility."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from ptrag.errors import CheckpointError, OutputError, TrainingError
from ptrag.prediction.predict import predict_sets
from ptrag.run.checkpoint import Checkpoint, read_checkpoint
from ptrag.training.prepare import prepare
from ptrag.training.run import train


def test_run_directory_holds_each_fact_once_and_enough_to_predict(trained_runs, tiny_data) -> None:
    dataset, split = tiny_data
    run = trained_runs["ptrag"]
    files = sorted(str(p.relative_to(run)) for p in run.rglob("*") if p.is_file())
    # Every side file is read back: config/split by --resume and predict, metrics.csv by --resume.
    assert files == [
        "checkpoints/best.ckpt",
        "checkpoints/last.ckpt",
        "config.toml",
        "metrics.csv",
        "split.toml",
    ]
    payload = read_checkpoint(run / "checkpoints/last.ckpt")
    assert payload["global_step"] == 120
    info = payload["ptrag"]
    assert info["config"]["model"]["arm"] == "ptrag"
    assert info["spec"]["genes"] == list(dataset.genes)
    assert set(info["spec"]["database_perturbations"]) == {p for _, p in split.groups(dataset, "train")}
    # Tables derived from the spec (neighbours, database rows, vocabulary embeddings) are not stored.
    stored = list(payload["state_dict"])
    assert not [k for k in stored if k.startswith("model.retriever.") or "gene_embeddings" in k]
    assert "database_embeddings" not in info["spec"]
    best = read_checkpoint(run / "checkpoints/best.ckpt")
    assert 0 < best["global_step"] <= 120 and set(best["state_dict"]) == set(payload["state_dict"])


def test_metrics_log_has_losses_selection_rate_and_step_time(trained_runs) -> None:
    import pandas as pd

    metrics = pd.read_csv(trained_runs["ptrag"] / "metrics.csv")
    for column in (
        "train/loss",
        "val/loss",
        "train/selection_rate",
        "train/kept_per_set",
        "train/step_time_s",
    ):
        assert metrics[column].notna().any(), column
    rate = metrics["train/selection_rate"].dropna()
    assert ((rate >= 0) & (rate <= 1)).all()


def test_database_holds_only_training_perturbations(tiny_data, make_config) -> None:
    dataset, split = tiny_data
    prepared = prepare(dataset, split, make_config("ptrag"))
    held_out = {p for role in ("val", "test") for _, p in split.groups(dataset, role)}
    train_perts = {p for _, p in split.groups(dataset, "train")}
    assert set(prepared.spec.database.perturbations) == train_perts
    # Few-shot: a held-out perturbation may be in the database only as another line's training data.
    only_held_out = held_out - train_perts
    assert only_held_out and not only_held_out & set(prepared.spec.database.perturbations)


def test_no_validation_or_test_cell_enters_a_stored_statistic(tiny_data, make_config) -> None:
    from dataclasses import replace

    from ptrag.data.expression import DenseExpression

    dataset, split = tiny_data
    config = make_config("memory")
    before = prepare(dataset, split, config).spec
    roles = split.roles(dataset)
    values = dataset.expression.rows(np.arange(dataset.n_cells)).copy()
    values[np.isin(roles, ["val", "test"])] += 100.0  # poison every held-out cell
    poisoned = replace(dataset, expression=DenseExpression(values))
    after = prepare(poisoned, split, config).spec
    np.testing.assert_array_equal(before.memory.shifts, after.memory.shifts)
    np.testing.assert_array_equal(before.database.embeddings, after.database.embeddings)
    assert before.database.perturbations == after.database.perturbations


def test_existing_run_is_refused_without_resume_or_overwrite(trained_runs, tiny_data, make_config) -> None:
    dataset, split = tiny_data
    with pytest.raises(OutputError, match="--resume"):
        train(make_config("st"), dataset, split, trained_runs["st"], progress=False)


def test_resume_without_a_checkpoint_is_a_clear_error(tmp_path, tiny_data, make_config) -> None:
    dataset, split = tiny_data
    with pytest.raises(CheckpointError, match="does not exist"):
        train(make_config("st"), dataset, split, tmp_path / "none", resume=True, progress=False)


def test_truncated_checkpoint_is_a_clear_error(trained_runs, tmp_path) -> None:
    data = (trained_runs["st"] / "checkpoints/last.ckpt").read_bytes()
    broken = tmp_path / "broken.ckpt"
    broken.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupted or truncated"):
        Checkpoint.load(broken)
    (tmp_path / "foreign.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError):
        Checkpoint.load(tmp_path / "foreign.ckpt")


@pytest.mark.parametrize("every_step", [True, False], ids=["cpu_every_step", "accelerator_deferred"])
def test_nan_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(
    every_step, tmp_path, tiny_data, monkeypatch, make_config
) -> None:
    """On a CPU the loss is checked at every step; on an accelerator only where the host waits for
    the device anyway (here: the next logged step, 30). Either way the error names the first bad step
    and nothing written after it survives."""
    from ptrag.training import progress
    from ptrag.training.module import PerturbationLightningModule

    dataset, split = tiny_data
    original = PerturbationLightningModule.distribution
    calls = {"n": 0}

    def poisoned(self, predicted, batch):
        calls["n"] += 1
        loss = original(self, predicted, batch)
        return loss * float("nan") if calls["n"] > 25 else loss

    monkeypatch.setattr(PerturbationLightningModule, "distribution", poisoned)
    monkeypatch.setattr(progress, "checks_every_step", lambda device: every_step)
    # 200 steps: metrics every 10 steps, checkpoints every 20.
    overrides = ("train.checkpoint_every=20", "train.val_every=1000", "train.max_steps=200")
    with pytest.raises(TrainingError, match=r"became nan at step 25"):
        train(make_config("st", *overrides), dataset, split, tmp_path / "run", progress=False)
    assert calls["n"] == (26 if every_step else 30)  # the deferred check trained on to step 30
    # The run is still partial: nothing replaced tmp_path / "run"; --resume would continue from step 20.
    assert not (tmp_path / "run").exists()
    partial = tmp_path / ".run.partial"
    kept = read_checkpoint(partial / "checkpoints" / "last.ckpt")
    assert kept["global_step"] == 20
    for value in kept["state_dict"].values():
        assert torch.isfinite(value.float()).all()
    logged = pd.read_csv(partial / "metrics.csv")
    assert logged["step"].tolist() == [10, 20] and np.isfinite(logged["train/loss"]).all()


def test_same_seed_gives_identical_predictions_and_another_seed_does_not(
    tmp_path, tiny_data, make_config
) -> None:
    dataset, split = tiny_data
    groups = split.groups(dataset, "test")[:4]
    outputs = []
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        config = make_config("ptrag", "train.max_steps=15", f"train.seed={seed}", "train.val_every=1000")
        train(config, dataset, split, tmp_path / name, progress=False)
        prediction = predict_sets(Checkpoint.load(tmp_path / name), dataset, groups, progress=False)
        outputs.append(prediction.adata_pred.X)
    np.testing.assert_array_equal(outputs[0], outputs[1])
    assert not np.array_equal(outputs[0], outputs[2])


def test_training_and_prediction_do_not_modify_the_input_file(
    tiny_screen, tiny_screen_digest, trained_runs
) -> None:
    import hashlib

    # trained_runs has trained every arm from this file by now.
    assert trained_runs
    assert hashlib.sha256((tiny_screen / "data.h5ad").read_bytes()).hexdigest() == tiny_screen_digest
