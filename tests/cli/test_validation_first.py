"""Bad settings are refused in one line before any output exists; Lightning's chatter is hidden."""

from __future__ import annotations

import logging
import warnings

import pytest

from ptrag.cli.main import main

from .cli_helpers import fails, train_args


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--set", "train.lr=-1"], "train.lr must be greater than 0, got -1.0."),
        (["--set", "model.hidden_dim=0"], "model.hidden_dim must be at least 1, got 0."),
        (["--steps", "-5"], "--steps must be at least 1, got -5."),
        (["--steps", "0"], "--steps must be at least 1, got 0."),
        (["--set", "train.val_every=0"], "train.val_every must be at least 1, got 0."),
        (["--set", "retrieval.top_k=500"], "retrieval.top_k = 500, but the retrieval database holds 34"),
        (["--set", "model.arm=foo"], "Unknown arm 'foo'. Registered arms: 'st', 'st_onehot'"),
    ],
    ids=["lr", "hidden_dim", "steps_negative", "steps_zero", "val_every", "top_k", "arm"],
)
def test_train_refuses_bad_settings_before_any_output(screen, capsys, extra, message) -> None:
    out = "run_bad_setting"
    line = fails(capsys, [*train_args(screen, out=out), *extra])  # the default arm, ptrag
    assert message in line
    assert sorted(p.name for p in screen.parent.iterdir() if "bad_setting" in p.name) == []


def test_train_without_a_split_says_so(screen, capsys) -> None:
    argv = train_args(screen, out="run_no_split")
    del argv[2:4]
    assert "--split is required" in fails(capsys, argv)


def test_resume_without_a_run_is_one_line(screen, capsys) -> None:
    line = fails(capsys, [*train_args(screen, out="never_trained"), "--resume"])
    assert "Cannot resume" in line and "does not exist" in line


def test_training_output_has_no_lightning_chatter_but_keeps_ptrag_warnings(screen, capfd, caplog) -> None:
    argv = [*train_args(screen, out="run_quiet"), "--arm", "ptrag", "--set", "train.cell_set_len=40"]
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.INFO):
        warnings.simplefilter("always")
        assert main(argv) == 0
    captured = capfd.readouterr()
    shown = "\n".join([captured.out, captured.err, caplog.text, *(str(w.message) for w in caught)])
    for chatter in ("GPU available", "TPU available", "Tip:", "LeafSpec", "weights_only", "reached"):
        assert chatter not in shown, chatter
    assert "groups have fewer cells than the set size 40" in caplog.text  # a warning that matters stays
    assert "trained ptrag for 5 steps" in captured.out
