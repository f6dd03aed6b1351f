"""Progress on the command line: stderr only, no \\r when redirected, --no-progress everywhere."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ptrag.cli.main import COMMANDS, build_parser, main

from .cli_helpers import TINY_MODEL

# A plain progress line: "<what>: <done>/<total> <unit> (<share>%), <seconds> s[, metrics]".
PROGRESS_LINE = re.compile(r"^[\w ]+: \d+/\d+ \w+ \(\d+%\), \d+ s")


def _subcommands() -> list[list[str]]:
    return [["memory", "add"] if name == "memory" else [name] for name, _, _ in COMMANDS]


@pytest.mark.parametrize("command", _subcommands(), ids=lambda c: " ".join(c))
def test_every_subcommand_accepts_no_progress(command, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--help"])
    assert exit_info.value.code == 0
    assert "--no-progress" in capsys.readouterr().out


def test_split_takes_no_progress() -> None:  # it used to reject the flag
    args = build_parser().parse_args(["split", "d.h5ad", "--out", "s.toml", "--no-progress"])
    assert args.no_progress


def test_a_redirected_command_writes_no_carriage_returns(screen, tmp_path) -> None:
    argv = ["train", str(screen / "data.h5ad"), "--split", str(screen / "split.toml"),
            "--out", str(tmp_path / "run")]  # fmt: skip
    argv += [a for a in TINY_MODEL if a != "--no-progress"]
    with open(tmp_path / "out.log", "wb") as out, open(tmp_path / "err.log", "wb") as err:
        status = subprocess.run(
            [sys.executable, "-m", "ptrag.cli.main", *argv], stdout=out, stderr=err, env=os.environ
        ).returncode
    stdout, stderr = (tmp_path / "out.log").read_bytes(), (tmp_path / "err.log").read_bytes()
    assert status == 0, stderr.decode()
    assert b"\r" not in stdout and b"\r" not in stderr
    progress = [line for line in stderr.decode().splitlines() if PROGRESS_LINE.match(line)]
    assert progress and progress[-1].startswith("train: 5/5 step (100%)"), stderr.decode()
    assert not any(PROGRESS_LINE.match(line) for line in stdout.decode().splitlines())


@pytest.mark.parametrize("quiet", [False, True], ids=["default", "no_progress"])
def test_no_progress_prints_no_progress_lines(screen, run_dir, tmp_path, capsys, quiet) -> None:
    queries = tmp_path / "queries.csv"
    queries.write_text("cell_type,perturbation,n_cells\nk562,RPL10,40\n")
    argv = ["predict", str(run_dir), "--data", str(screen / "data.h5ad"), "--queries", str(queries),
            "--out", str(tmp_path / "pred"), *(["--no-progress"] if quiet else [])]  # fmt: skip
    assert main(argv) == 0
    out, err = capsys.readouterr()
    lines = [line for line in (out + err).splitlines() if PROGRESS_LINE.match(line)]
    assert "\r" not in out + err
    if quiet:
        assert lines == [], err
    else:
        assert [line.split(":")[0] for line in lines] == ["predict"], err
        assert not any(PROGRESS_LINE.match(line) for line in out.splitlines())
    assert "predicted 40 cells" in out


def test_the_benchmark_script_prints_the_report_line_once() -> None:
    script = Path(__file__).parents[2] / "scripts" / "run_benchmark.sh"
    assert "report:" not in "".join(
        line for line in script.read_text().splitlines() if not line.lstrip().startswith("#")
    )
    source = (Path(__file__).parents[2] / "src" / "ptrag" / "cli" / "benchmark_cmd.py").read_text()
    assert source.count('print(f"report: ') == 1
