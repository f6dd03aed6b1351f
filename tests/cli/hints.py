"""Every ``--flag`` an error line names must be an option of the command that printed it."""

from __future__ import annotations

import argparse
import re
from functools import lru_cache

from ptrag.cli.main import build_parser

FLAG = re.compile(r"(?<![\w/-])--[a-z][a-z0-9]*(?:-[a-z0-9]+)*")
# A hint may quote another command: "(e.g. `ptrag embed-genes --data ...`)"; its flags are that command's.
QUOTED_COMMAND = re.compile(r"`ptrag ([a-z][a-z-]*)([^`]*)`")


@lru_cache(maxsize=1)
def command_options() -> dict[str, frozenset[str]]:
    """Subcommand → its option strings (``--out``, ``-k``, ``--help``, ...)."""
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {name: frozenset(p._option_string_actions) for name, p in sub.choices.items()}


def named_flags(command: str, line: str) -> list[tuple[str, str]]:
    """``(command, flag)`` for every flag in ``line``; flags of a quoted ``ptrag <other>`` go to it."""
    pairs = [
        (quoted.group(1), flag)
        for quoted in QUOTED_COMMAND.finditer(line)
        for flag in FLAG.findall(quoted.group(2))
    ]
    pairs += [(command, flag) for flag in FLAG.findall(QUOTED_COMMAND.sub(" ", line))]
    return pairs


def assert_hint_flags_exist(command: str, line: str) -> None:
    options = command_options()
    wrong = [(cmd, flag) for cmd, flag in named_flags(command, line) if flag not in options.get(cmd, ())]
    assert not wrong, f"the error names flags its command lacks {wrong}: {line}"
