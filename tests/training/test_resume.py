"""Resume: a run killed with SIGKILL and resumed equals an uninterrupted one bit for bit (every arm
that draws random numbers while training), keeps its metrics history, takes its config from the
run directory, and a finished run resumed changes nothing."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import anndata as ad
import pandas as pd
import pytest
import torch

from ptrag.cli.main import main
from ptrag.run.checkpoint import read_checkpoint

STEPS, KILL_AT = 40, 27  # checkpoints every 10 steps: the kill loses steps 21-27
SETTINGS = (
    "model.hidden_dim=16",
    "model.n_layers=1",
    "model.n_heads=2",
    "retrieval.top_k=8",
    "train.cell_set_len=16",
    "train.sets_per_batch=4",
    "train.checkpoint_every=10",
    "train.val_every=15",
    "train.val_sets=8",
    "train.num_threads=1",
)
# One interpreter imports everything once, then forks one child per run; each child SIGKILLs itself
# right after the callbacks of step KILL_AT, so the moment of the kill is exact.
KILLER = """
import os, signal, sys
import ptrag.api, ptrag.data.loading, ptrag.training.run
from ptrag.cli.main import main
from ptrag.training import progress
original = progress.RunProgress.on_train_batch_end
def end_of_step(self, trainer, *args):
    original(self, trainer, *args)
    if trainer.global_step == {kill_at}:
        os.kill(os.getpid(), signal.SIGKILL)
progress.RunProgress.on_train_batch_end = end_of_step
for argv in {runs!r}:
    pid = os.fork()
    if pid == 0:
        main(argv)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    if not os.WIFSIGNALED(status) or os.WTERMSIG(status) != signal.SIGKILL:
        sys.exit(f"{{argv[5]}} was not killed (wait status {{status}})")
"""


def train_argv(screen: Path, out: Path, *extra: str) -> list[str]:
    settings = [item for setting in SETTINGS for item in ("--set", setting)]
    data, split = str(screen / "data.h5ad"), str(screen / "split.toml")
    return ["train", data, "--split", split, "--out", str(out), "--no-progress", *settings, *extra]


def assert_same_run(a: Path, b: Path) -> None:
    for name in ("last", "best"):
        first = read_checkpoint(a / "checkpoints" / f"{name}.ckpt")
        second = read_checkpoint(b / "checkpoints" / f"{name}.ckpt")
        assert first["global_step"] == second["global_step"]
        assert first["state_dict"].keys() == second["state_dict"].keys()
        for key, value in first["state_dict"].items():
            assert torch.equal(value, second["state_dict"][key]), f"{name}.ckpt {key}"
    first, second = (pd.read_csv(run / "metrics.csv").drop(columns="train/step_time_s") for run in (a, b))
    pd.testing.assert_frame_equal(first, second)


@pytest.fixture(scope="module")
def killed_runs(tiny_screen: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One run per arm, each SIGKILLed after step KILL_AT."""
    root = tmp_path_factory.mktemp("killed")
    runs = {arm: root / arm for arm in ("st", "ptrag", "memory")}
    argvs = [train_argv(tiny_screen, run, "--arm", arm, "--steps", str(STEPS)) for arm, run in runs.items()]
    script = KILLER.format(kill_at=KILL_AT, runs=argvs)
    finished = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr[-3000:]
    return runs


@pytest.mark.parametrize("arm", ["st", "ptrag", "memory"])
def test_resumed_after_sigkill_equals_the_uninterrupted_run(
    arm: str, killed_runs: dict[str, Path], tiny_screen: Path, tmp_path: Path
) -> None:
    run = killed_runs[arm]
    partial = run.parent / f".{arm}.partial"
    assert not run.exists()  # nothing is in place until the run has finished
    assert read_checkpoint(partial / "checkpoints" / "last.ckpt")["global_step"] == 20
    logged = pd.read_csv(partial / "metrics.csv")["step"]
    assert logged.max() > 20  # the killed run had logged steps that the resume computes again

    # Resumed without --arm or --steps: the config comes from the run directory.
    assert main(train_argv(tiny_screen, run, "--resume")) == 0
    assert not partial.exists()
    assert main(train_argv(tiny_screen, tmp_path / "straight", "--arm", arm, "--steps", str(STEPS))) == 0
    assert_same_run(run, tmp_path / "straight")
    steps = pd.read_csv(run / "metrics.csv")["step"]
    assert steps.is_monotonic_increasing and steps.iloc[0] == 2 and steps.iloc[-1] == STEPS


def test_resume_options_must_agree_with_the_run(
    killed_runs, tiny_screen: Path, tmp_path: Path, capsys
) -> None:
    run = killed_runs["st"]
    if not run.exists():  # the arm's own test resumes it; this test needs the finished run
        assert main(train_argv(tiny_screen, run, "--resume")) == 0
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}

    assert main(train_argv(tiny_screen, run, "--resume", "--arm", "ptrag")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "model.arm = 'ptrag', but the run has 'st'" in err[0] and "--steps" in err[0]
    assert main(train_argv(tiny_screen, run, "--resume", "--set", "train.lr=0.5")) == 2
    assert "train.lr = 0.5, but the run has 0.001" in capsys.readouterr().err

    # Resuming a finished run says so and changes nothing.
    assert main(train_argv(tiny_screen, run, "--resume")) == 0
    assert f"already finished: step {STEPS} of {STEPS}" in capsys.readouterr().out
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before

    # Other data than the run's are refused before anything is written.
    adata = ad.read_h5ad(tiny_screen / "data.h5ad")
    held_out = set(re.findall(r'"([A-Z0-9]+)"', (tiny_screen / "split.toml").read_text()))
    dropped = next(p for p in adata.obs["gene"].cat.categories if p not in held_out and p != "non-targeting")
    adata[adata.obs["gene"] != dropped].copy().write_h5ad(tmp_path / "other.h5ad")
    argv = train_argv(tiny_screen, run, "--resume", "--steps", str(STEPS + 10))
    argv[1] = str(tmp_path / "other.h5ad")
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"not the data {run} was trained on: its perturbations, training perturbations differ" in err
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before
    assert not (run.parent / ".st.partial").exists()

    # --steps is the documented exception: it extends the finished run, keeping its history.
    assert main(train_argv(tiny_screen, run, "--resume", "--steps", str(STEPS + 10))) == 0
    assert read_checkpoint(run / "checkpoints" / "last.ckpt")["global_step"] == STEPS + 10
    metrics = pd.read_csv(run / "metrics.csv")
    assert metrics["step"].iloc[0] == 2 and metrics["step"].iloc[-1] == STEPS + 10
    assert (metrics["stopped"] == "max_steps").sum() == 2  # the first end, then the extended one

    # Killed after its final checkpoint but before it was moved into place: resuming just moves it.
    run.rename(run.parent / ".st.partial")
    assert main(train_argv(tiny_screen, run, "--resume")) == 0
    assert f"already finished: step {STEPS + 10} of {STEPS + 10}" in capsys.readouterr().out
    assert run.is_dir() and not (run.parent / ".st.partial").exists()
