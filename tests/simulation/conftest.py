"""Fixtures: the tiny preset simulated once per session from the real bundled gene table."""

from __future__ import annotations

from pathlib import Path

import pytest

from ptrag.simulation import SimulationResult, simulate


@pytest.fixture(scope="session")
def tiny_screen(tmp_path_factory: pytest.TempPathFactory) -> SimulationResult:
    return simulate("tiny", 0, tmp_path_factory.mktemp("tiny") / "screen")


@pytest.fixture(scope="session")
def tiny_screen_again(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return simulate("tiny", 0, tmp_path_factory.mktemp("tiny_again") / "screen").out_dir


@pytest.fixture(scope="session")
def tiny_hetero_screen(tmp_path_factory: pytest.TempPathFactory) -> SimulationResult:
    return simulate("tiny-hetero", 0, tmp_path_factory.mktemp("tiny_hetero") / "screen")
