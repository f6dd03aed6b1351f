"""Training with the stratified loss: batches carry each cell's basal-state stratum, the loss mixes
the pooled and the stratified energy as configured, and the cell-state options train."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ptrag import Model
from ptrag.config import load_config
from ptrag.data.loading import load_dataset
from ptrag.data.sets import SetSampler
from ptrag.data.splits import Split
from ptrag.models.losses import energy_unbiased, stratified_energy
from ptrag.run.tensors import SetTensorizer
from ptrag.training.module import PerturbationLightningModule
from ptrag.training.prepare import prepare
from ptrag.training.run import _strata

SETTINGS = (
    "model.hidden_dim=16",
    "model.n_layers=1",
    "model.n_heads=2",
    "train.max_steps=20",
    "train.val_every=10",
    "train.cell_set_len=16",
    "train.num_threads=1",
)


@pytest.mark.parametrize("weight", [0.0, 0.5])
def test_the_loss_mixes_pooled_and_stratified_energy_by_the_configured_weight(
    tiny_screen: Path, weight: float
) -> None:
    config = load_config("cpu-small", [*SETTINGS, "model.arm=st", f"model.strata_loss_weight={weight}"])
    dataset = load_dataset(tiny_screen / "data.h5ad", config.data)
    prepared = prepare(dataset, Split.read(tiny_screen / "split.toml"), config)
    strata = _strata(prepared, config)
    assert (strata is None) == (weight == 0.0)
    tensorize = SetTensorizer(prepared.dataset, prepared.spec, config.model.anchor, strata)
    sets = SetSampler(prepared.dataset, prepared.groups_for("train"), 16, 0).fixed_sets()[:4]
    batch = tensorize(sets)
    module = PerturbationLightningModule(config, prepared.spec).eval()
    with torch.no_grad():
        distribution, _, output = module.losses(batch)
        pooled = energy_unbiased(output.predicted, batch["target"]).mean()
        if weight == 0.0:
            assert "control_stratum" not in batch
            torch.testing.assert_close(distribution, pooled)
            return
        assert batch["control_stratum"].shape == (4, 16) and (batch["control_stratum"] >= 0).all()
        assert (batch["target_stratum"] >= 0).all()  # training groups are labelled
        stratified = stratified_energy(
            output.predicted, batch["target"], batch["control_stratum"], batch["target_stratum"]
        ).mean()
        torch.testing.assert_close(distribution, 0.5 * pooled + 0.5 * stratified)
        assert abs(float(stratified) - float(pooled)) > 1e-4


def test_the_memory_arm_trains_with_cell_gain_set_selection_and_the_stratified_loss(
    tiny_screen: Path, tmp_path: Path
) -> None:
    overrides = (*SETTINGS, "model.strata_loss_weight=0.5", "retrieval.cell_gain=true")
    for scope in ("cell", "set"):
        settings = (*overrides, f"retrieval.selection_scope={scope}")
        model = Model.from_config("cpu-small", settings, arm="memory")
        model.fit(tiny_screen / "data.h5ad", tiny_screen / "split.toml", tmp_path / scope, progress=False)
        pred, _ = model.predict(tiny_screen / "data.h5ad", split="test", progress=False)
        assert pred.n_obs > 0 and torch.isfinite(torch.from_numpy(pred.X)).all()
        assert model.checkpoint.model().cell_gain is not None
