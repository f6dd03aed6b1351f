"""ptrag.progress: a bar on a terminal, plain lines elsewhere, always on stderr, and a global off switch."""

from __future__ import annotations

import io
import re

import pytest

import ptrag.data.matrix_source as matrix_source
from ptrag import progress as progress_module
from ptrag.data.loading import load_dataset
from ptrag.progress import progress_bar, progress_enabled

PLAIN_LINE = re.compile(r"^\S[^:]*: \d+(/\d+)? \w+")


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_off_a_terminal_progress_is_plain_lines_on_stderr(capsys, monkeypatch) -> None:
    monkeypatch.setattr(progress_module, "PLAIN_INTERVAL_S", 0.0)  # a line at every update
    for _ in progress_bar(range(3), desc="work", unit="set"):
        pass
    out, err = capsys.readouterr()
    assert out == ""
    assert "\r" not in err
    lines = err.splitlines()
    assert lines[0].startswith("work: 1/3 set (33%)")
    assert lines[-1].startswith("work: 3/3 set (100%)")
    assert all(PLAIN_LINE.match(line) for line in lines)


def test_plain_lines_are_periodic_with_one_at_the_end(capsys) -> None:
    with progress_bar(total=1000, desc="evaluate", unit="condition") as bar:
        for _ in range(1000):
            bar.update(1)
        bar.set_postfix(loss=0.123456)
    err = capsys.readouterr().err
    # Far under PLAIN_INTERVAL_S: only the closing line.
    assert err.splitlines() == [line for line in err.splitlines() if line.startswith("evaluate: 1000/1000")]
    assert len(err.splitlines()) == 1 and "loss=0.1235" in err


def test_on_a_terminal_it_is_a_tqdm_bar_on_stderr(capsys, monkeypatch) -> None:
    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    for _ in progress_bar(range(3), desc="predict", unit="batch"):
        pass
    assert "\r" in terminal.getvalue() and "predict" in terminal.getvalue()
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("how", ["argument", "switch"])
def test_disabled_progress_prints_nothing(capsys, monkeypatch, how) -> None:
    monkeypatch.setattr(progress_module, "PLAIN_INTERVAL_S", 0.0)
    with progress_enabled(how != "switch"), progress_bar(total=5, desc="x", enabled=how != "argument") as bar:
        bar.update(5)
    assert capsys.readouterr() == ("", "")


def test_the_switch_nests_and_restores() -> None:
    with progress_enabled(False), progress_enabled(True):  # an inner block cannot turn progress back on
        assert not progress_bar(total=1, desc="x")._shown
    assert progress_bar(total=1, desc="x")._shown


def test_the_file_reading_report_obeys_the_switch(screen_h5ad, capsys, monkeypatch) -> None:
    monkeypatch.setattr(matrix_source, "CHUNK_VALUES", 200)  # many chunks: the reading report shows
    load_dataset(screen_h5ad)
    assert "Reading expression:" in capsys.readouterr().err
    with progress_enabled(False):
        load_dataset(screen_h5ad)
    assert "Reading expression" not in capsys.readouterr().err
