"""Which splits a benchmark runs: every split file the data offers, or those named by --splits."""

from __future__ import annotations

import pytest

from ptrag.benchmark.splits import parse_splits, resolve_splits
from ptrag.cli.main import main
from ptrag.errors import DataError


def _data_dir(tmp_path, *files: str):
    for name in ("data.h5ad", *files):
        (tmp_path / name).write_text("")
    return tmp_path


def test_every_offered_split_by_default(tmp_path) -> None:
    both = _data_dir(tmp_path, "split.toml", "split_unseen.toml")
    assert [(s.name, p.name) for s, p in resolve_splits(both)] == [
        ("fewshot", "split.toml"),
        ("unseen", "split_unseen.toml"),
    ]


def test_a_users_directory_with_only_split_toml_still_works(tmp_path) -> None:
    only = _data_dir(tmp_path, "split.toml")
    assert [s.label for s, _ in resolve_splits(only)] == ["few-shot"]
    assert [s.name for s, _ in resolve_splits(only, ["fewshot"])] == ["fewshot"]


def test_a_requested_split_must_exist_and_the_error_says_how_to_make_it(tmp_path) -> None:
    only = _data_dir(tmp_path, "split.toml")
    with pytest.raises(DataError, match=r"split_unseen.toml does not exist.*ptrag split .*--mode unseen"):
        resolve_splits(only, ["unseen"])
    with pytest.raises(DataError, match=r"data\.h5ad; it is missing"):
        resolve_splits(tmp_path / "nowhere")
    (tmp_path / "split.toml").unlink()
    with pytest.raises(DataError, match=r"must hold data\.h5ad and split\.toml .*; split\.toml is missing"):
        resolve_splits(tmp_path)


def test_parse_splits() -> None:
    assert parse_splits(None) is None and parse_splits("") is None
    assert parse_splits("unseen, fewshot,unseen") == ["unseen", "fewshot"]
    with pytest.raises(DataError, match=r"unknown split\(s\) 'zeroshot'; choose from 'fewshot', 'unseen'"):
        parse_splits("fewshot,zeroshot")


def test_cli_names_the_bad_split_in_one_line(tmp_path, capsys) -> None:
    (tmp_path / "data").mkdir()
    only = _data_dir(tmp_path / "data", "split.toml")
    code = main(["benchmark", "--data", str(only), "--splits", "unseen", "--out", str(tmp_path / "out")])
    error = capsys.readouterr().err.strip()
    assert code == 2 and len(error.splitlines()) == 1 and "split_unseen.toml does not exist" in error
    assert not (tmp_path / "out").exists()  # nothing written before the data directory checks out
