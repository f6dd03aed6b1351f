"""The weights' moving average: its arithmetic, swapping it in and out, and what a run keeps of it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from ptrag.keys import AVERAGE_KEY, MODEL_PREFIX
from ptrag.run.checkpoint import Checkpoint, read_checkpoint
from ptrag.training.averaging import WeightAverage


def linear_with(weight: float) -> nn.Linear:
    layer = nn.Linear(2, 1)
    with torch.no_grad():
        layer.weight.fill_(weight)
        layer.bias.fill_(weight)
    return layer


def test_the_average_follows_its_ramped_decay() -> None:
    layer = linear_with(0.0)
    average = WeightAverage(layer, decay=0.99)
    for step, value in enumerate((10.0, 20.0, 30.0)):
        with torch.no_grad():
            layer.weight.fill_(value)
        average.update(layer)
        assert average.updates == step + 1
    # Decays (1 + n) / (10 + n) for n = 0, 1, 2: 0.1, 2/11, 0.25 (all below 0.99).
    expected = 0.0
    for n, value in enumerate((10.0, 20.0, 30.0)):
        decay = (1 + n) / (10 + n)
        expected = decay * expected + (1 - decay) * value
    assert average.shadow["weight"] == pytest.approx(torch.full((1, 2), expected))
    assert expected == pytest.approx(27.0)  # 9, then 18, then 27
    assert average.shadow["bias"] == pytest.approx(torch.zeros(1))  # the bias never moved


def test_swapping_the_average_in_restores_the_raw_weights_even_after_an_error() -> None:
    layer = linear_with(1.0)
    average = WeightAverage(layer, decay=0.5)
    with torch.no_grad():
        layer.weight.fill_(3.0)
    with pytest.raises(RuntimeError), average.swapped_in(layer):
        assert torch.equal(layer.weight, torch.ones(1, 2))
        raise RuntimeError("validation failed")
    assert torch.equal(layer.weight, torch.full((1, 2), 3.0))


def test_a_decay_outside_the_open_interval_is_refused() -> None:
    with pytest.raises(ValueError, match=r"train\.ema_decay"):
        WeightAverage(nn.Linear(1, 1), decay=1.0)


def test_state_round_trips_and_names_what_is_missing() -> None:
    layer = linear_with(2.0)
    average = WeightAverage(layer, decay=0.9)
    average.update(linear_with(4.0))
    restored = WeightAverage(linear_with(0.0), decay=0.9)
    restored.load_state_dict(average.state_dict())
    assert restored.updates == 1
    assert torch.equal(restored.shadow["weight"], average.shadow["weight"])
    with pytest.raises(KeyError, match="bias"):
        restored.load_state_dict({"updates": 1, "shadow": {"weight": torch.zeros(1, 2)}})
    # A checkpoint written without an average: it starts again at the resumed weights.
    restored.restart(dict(linear_with(5.0).named_parameters()))
    assert restored.updates == 0
    assert torch.equal(restored.shadow["bias"], torch.full((1,), 5.0))


def test_a_run_keeps_the_average_in_best_and_predicts_from_it_in_last(
    tiny_data, make_config, tmp_path: Path
) -> None:
    from ptrag.training.run import train

    dataset, split = tiny_data
    config = make_config("memory", "train.ema_decay=0.9", "train.max_steps=60", "train.val_every=60")
    train(config, dataset, split, tmp_path / "run", progress=False)
    last = read_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")
    best = read_checkpoint(tmp_path / "run" / "checkpoints" / "best.ckpt")
    shadow = last[AVERAGE_KEY]["shadow"]
    assert last[AVERAGE_KEY]["updates"] == 60
    raw = {k.removeprefix(MODEL_PREFIX): v for k, v in last["state_dict"].items()}
    moved = [name for name, value in shadow.items() if not torch.equal(value, raw[name])]
    assert len(moved) > len(shadow) // 2  # the average lags the raw weights
    # One validation, at the last step: best.ckpt holds that step's average, and so does what
    # prediction loads from last.ckpt.
    assert best["global_step"] == last["global_step"] == 60
    loaded = Checkpoint.load(tmp_path / "run", "last")
    for name, value in shadow.items():
        assert torch.equal(best["state_dict"][MODEL_PREFIX + name], value)
        assert torch.equal(loaded.state_dict[name], value)
