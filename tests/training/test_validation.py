"""Validation-driven training: validation loss at intervals, best.ckpt, early stopping, metrics.csv,
and automatic validation groups for splits without them."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from ptrag import Model
from ptrag.data.loading import load_dataset
from ptrag.data.splits import Split
from ptrag.evaluation.distributional import energy_distances
from ptrag.keys import MODEL_PREFIX
from ptrag.run.checkpoint import Checkpoint, read_checkpoint

SETTINGS = (
    "model.hidden_dim=32",
    "model.n_layers=1",
    "model.n_heads=2",
    "train.lr=3e-3",
    "train.sets_per_batch=8",
    "train.cell_set_len=16",
    "train.val_every=10",
    "train.val_sets=16",
    "train.patience=5",
    "train.max_steps=1500",
    "train.num_threads=1",
)


@pytest.fixture(scope="module")
def small_screen(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One line, 20 perturbations: 12 train, 3 val, 5 test — small enough to overfit quickly."""
    from ptrag.simulation import PRESETS, simulate

    preset = replace(
        PRESETS["tiny"],
        name="tiny-one-line",
        cell_lines=("k562",),
        n_perturbation_pool=24,
        n_perturbations_per_line=20,
    )
    out = tmp_path_factory.mktemp("small") / "screen"
    simulate(preset, seed=0, out_dir=out)
    return out


def mean_test_energy(model: Model, data: Path) -> float:
    pred, real = model.predict(data, split="test", progress=False)
    control = real.uns["ptrag"]["control_label"]
    perturbations = sorted(set(real.obs["target_gene"]) - {control})
    assert perturbations
    return float(
        np.mean(
            [
                energy_distances(
                    pred.X[(pred.obs["target_gene"] == p).to_numpy()],
                    real.X[(real.obs["target_gene"] == p).to_numpy()],
                )[0]
                for p in perturbations
            ]
        )
    )


def test_a_small_screen_stops_early_and_predicts_with_its_best_validation_step(
    small_screen: Path, tmp_path: Path
) -> None:
    data, split = small_screen / "data.h5ad", small_screen / "split.toml"
    dataset = load_dataset(data)
    assert len({p for _, p in Split.read(split).groups(dataset, "train")}) <= 15

    model = Model.from_config("cpu-small", SETTINGS, arm="st").fit(
        data, split, tmp_path / "run", progress=False
    )
    outcome = model.outcome
    assert outcome.stopped == "early" and outcome.steps < 1500
    assert outcome.steps - outcome.best_step == 5 * 10  # patience 5 validations, every 10 steps

    metrics = pd.read_csv(tmp_path / "run" / "metrics.csv")
    validated = metrics.dropna(subset=["val/loss"])
    assert validated["step"].tolist() == list(range(10, outcome.steps + 1, 10))
    assert validated["val/loss"].min() == validated["val/best_loss"].iloc[-1]
    assert validated["val/best_step"].iloc[-1] == outcome.best_step
    assert metrics["stopped"].dropna().tolist() == ["early"]
    assert metrics.loc[metrics["stopped"] == "early", "step"].item() == outcome.steps
    assert metrics["train/loss"].notna().all()  # logged every 50 steps and at every validation

    # predict uses best.ckpt: exactly the weights a run stopped at the best step has.
    assert model.checkpoint.step == outcome.best_step
    at_best = Model.from_config("cpu-small", [*SETTINGS, f"train.max_steps={outcome.best_step}"], arm="st")
    at_best.fit(data, split, tmp_path / "to_best", progress=False)
    # (Both are the weights' moving average, which last.ckpt carries beside the raw weights.)
    best = Checkpoint.load(tmp_path / "run", "best").state_dict
    final = Checkpoint.load(tmp_path / "to_best", "last").state_dict
    raw = read_checkpoint(tmp_path / "to_best" / "checkpoints" / "last.ckpt")["state_dict"]
    assert best.keys() == final.keys()
    assert all(torch.equal(value, final[key]) for key, value in best.items())
    assert not all(torch.equal(value, raw[MODEL_PREFIX + key]) for key, value in best.items())

    # Its test energy is no worse than that of the weights it stopped with.
    energy_best = mean_test_energy(model, data)
    energy_last = mean_test_energy(Model.load(tmp_path / "run", checkpoint="last"), data)
    print(f"energy at step {outcome.best_step}: {energy_best:.4f}, at {outcome.steps}: {energy_last:.4f}")
    assert energy_best <= energy_last


def test_a_split_without_val_groups_holds_out_training_groups_and_says_so(
    small_screen: Path, tmp_path: Path, caplog
) -> None:
    given = Split.read(small_screen / "split.toml")
    no_val = Split(
        name=given.name,
        fewshot={c: {"val": [], "test": lists["test"]} for c, lists in given.fewshot.items()},
        datasets=given.datasets,
        training=given.training,
    )
    settings = [*SETTINGS, "train.max_steps=20", "train.patience=0"]
    with caplog.at_level(logging.INFO):
        Model.from_config("cpu-small", settings, arm="st").fit(
            small_screen / "data.h5ad", no_val, tmp_path / "run", progress=False
        )
    lines = [r.getMessage() for r in caplog.records if "has no val groups" in r.getMessage()]
    assert lines == [
        "The split has no val groups: 2 of 15 training (cell type, perturbation) groups "
        "(train.val_fraction = 0.1) were held out for validation."
    ]
    text = (tmp_path / "run" / "split.toml").read_text()
    assert text.startswith("# ptrag: The split has no val groups: 2 of 15")
    dataset = load_dataset(small_screen / "data.h5ad")
    written = Split.read(tmp_path / "run" / "split.toml")
    assert len(written.groups(dataset, "val")) == 2
    assert written.groups(dataset, "test") == given.groups(dataset, "test")
    assert pd.read_csv(tmp_path / "run" / "metrics.csv")["val/loss"].notna().sum() == 2
    assert (tmp_path / "run" / "checkpoints" / "best.ckpt").is_file()
