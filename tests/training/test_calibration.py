"""After training, the best checkpoint keeps as much of the learned response as validation says."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ptrag import Model
from ptrag.run.checkpoint import CELL_SCALE_KEY, RESIDUAL_SCALE_KEY, Checkpoint, read_checkpoint
from ptrag.training.calibration import CELL_SCALES, RESIDUAL_SCALES

SETTINGS = (
    "model.hidden_dim=16",
    "model.n_layers=1",
    "model.n_heads=2",
    "train.max_steps=40",
    "train.val_every=20",
    "train.cell_set_len=16",
    "train.num_threads=1",
)


@pytest.fixture(scope="module")
def trained(tiny_screen: Path, tmp_path_factory: pytest.TempPathFactory) -> Model:
    model = Model.from_config("cpu-small", SETTINGS, arm="memory")
    run = tmp_path_factory.mktemp("calibration") / "run"
    return model.fit(tiny_screen / "data.h5ad", tiny_screen / "split.toml", run, progress=False)


def test_the_best_checkpoint_carries_the_scales_with_the_lowest_validation_loss(trained: Model) -> None:
    assert trained.run_dir is not None
    payload = read_checkpoint(trained.run_dir / "checkpoints" / "best.ckpt")
    losses = {
        tuple(float(v) for v in key.split(",")): loss
        for key, loss in payload["residual_scale_val_losses"].items()
    }
    grid = {(s, c) for s in RESIDUAL_SCALES if s > 0 for c in CELL_SCALES} | {(0.0, 1.0)}
    assert set(losses) == grid
    chosen = (payload[RESIDUAL_SCALE_KEY], payload[CELL_SCALE_KEY])
    assert losses[chosen] == min(losses.values())
    assert len(set(losses.values())) > 1  # the scales change what is predicted
    assert losses[(1.0, 0.5)] != losses[(1.0, 1.0)]  # and the per-cell scale does on its own
    # The validation loss at scales 1, 1 is the one training recorded for that checkpoint.
    assert losses[(1.0, 1.0)] == pytest.approx(payload["val_loss"], rel=1e-6)
    loaded = Checkpoint.load(trained.run_dir)
    assert (loaded.residual_scale, loaded.cell_scale) == chosen
    generator = trained.checkpoint.model().generator
    assert (generator.residual_scale, generator.cell_scale) == chosen
    # last.ckpt, which --resume reads, keeps training's state.
    assert RESIDUAL_SCALE_KEY not in read_checkpoint(trained.run_dir / "checkpoints" / "last.ckpt")


def test_the_scale_multiplies_the_learned_response_only(trained: Model, tiny_screen: Path) -> None:
    from ptrag.data.sets import SetSampler
    from ptrag.prediction.core import predictor

    checkpoint = trained.checkpoint
    run = predictor(checkpoint, trained.load_data(tiny_screen / "data.h5ad"), ["PSMA4"], ["k562"])
    batch = run.tensorize(SetSampler(run.dataset, [("k562", "PSMA4")], 16, 0).fixed_sets()[:2])
    run.model.generator.cell_scale = 1.0
    outputs = {}
    for scale in (0.0, 0.5, 1.0):
        run.model.generator.residual_scale = scale
        with torch.inference_mode():
            outputs[scale] = run.model.on_batch(batch).predicted.numpy()
    # Where no ReLU clips (the default output clips nothing), the prediction moves linearly with the
    # scale: half-way at 0.5.
    unclipped = (outputs[0.0] > 0) & (outputs[1.0] > 0) & (outputs[0.5] > 0)
    assert unclipped.mean() > 0.5
    halfway = (outputs[0.0] + outputs[1.0]) / 2
    np.testing.assert_allclose(outputs[0.5][unclipped], halfway[unclipped], rtol=1e-4, atol=1e-5)
    assert np.abs(outputs[1.0] - outputs[0.0]).max() > 1e-3
    # Scale 0 is the model without its learned response: anchored controls plus evidence.
    torch.nn.init.zeros_(run.model.generator.output.weight)
    torch.nn.init.zeros_(run.model.generator.output.bias)
    run.model.generator.residual_scale = 1.0
    with torch.inference_mode():
        without = run.model.on_batch(batch).predicted.numpy()
    np.testing.assert_allclose(without, outputs[0.0], atol=1e-6)


def test_calibration_can_be_switched_off(tiny_screen: Path, tmp_path: Path) -> None:
    model = Model.from_config(
        "cpu-small", (*SETTINGS, "train.max_steps=20", "train.calibrate_residual=false")
    )
    model.fit(tiny_screen / "data.h5ad", tiny_screen / "split.toml", tmp_path / "run", progress=False)
    payload = read_checkpoint(tmp_path / "run" / "checkpoints" / "best.ckpt")
    assert RESIDUAL_SCALE_KEY not in payload
    assert Checkpoint.load(tmp_path / "run").residual_scale == 1.0


def test_the_cell_scale_shrinks_only_how_cells_of_a_set_differ(trained: Model, tiny_screen: Path) -> None:
    from ptrag.data.sets import SetSampler
    from ptrag.prediction.core import predictor

    run = predictor(trained.checkpoint, trained.load_data(tiny_screen / "data.h5ad"), ["PSMA4"], ["k562"])
    batch = run.tensorize(SetSampler(run.dataset, [("k562", "PSMA4")], 16, 0).fixed_sets()[:2])
    generator = run.model.generator
    generator.residual_scale, generator.clip = 1.0, False
    outputs = {}
    for cell in (0.0, 0.5, 1.0):
        generator.cell_scale = cell
        with torch.inference_mode():
            outputs[cell] = run.model.on_batch(batch).predicted.numpy()
    per_cell = outputs[1.0] - outputs[0.0]  # the learned response's per-cell part
    assert np.abs(per_cell).max() > 1e-4
    np.testing.assert_allclose(per_cell.mean(axis=1), 0.0, atol=1e-5)  # every set keeps its mean
    np.testing.assert_allclose(outputs[0.5] - outputs[0.0], per_cell / 2, atol=1e-5)


def test_one_network_pass_gives_the_validation_loss_of_every_scale(trained: Model, tiny_screen: Path) -> None:
    """Calibration runs the network once per batch and applies each scale afterwards; the losses are
    exactly those of a full validation pass with the generator set to that scale."""
    from ptrag.data.loading import load_dataset
    from ptrag.data.splits import Split
    from ptrag.training.calibration import scaled_validation_losses
    from ptrag.training.module import PerturbationLightningModule
    from ptrag.training.prepare import prepare
    from ptrag.training.progress import validation_loss
    from ptrag.training.run import _validation_batches

    assert trained.run_dir is not None
    config = trained.checkpoint.config
    dataset = load_dataset(tiny_screen / "data.h5ad", config.data, set_len=config.train.cell_set_len)
    prepared = prepare(dataset, Split.read(trained.run_dir / "split.toml"), config)
    batches = _validation_batches(prepared, config)
    module = PerturbationLightningModule(config, prepared.spec)
    module.load_state_dict(read_checkpoint(trained.run_dir / "checkpoints" / "best.ckpt")["state_dict"])
    grid = [(1.0, 1.0), (0.75, 0.5), (0.25, 0.0), (0.0, 1.0)]
    fast = scaled_validation_losses(module, batches, grid)
    generator = module.model.generator
    assert (generator.residual_scale, generator.cell_scale, generator.captured) == (1.0, 1.0, None)
    for scale, cell in grid:
        generator.residual_scale, generator.cell_scale = scale, cell
        assert fast[(scale, cell)] == validation_loss(module, batches)[0]
    assert len(set(fast.values())) == len(grid)
