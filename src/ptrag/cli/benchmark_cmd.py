"""Placeholder: replaced by the module's owner."""

from __future__ import annotations

import argparse
from typing import Any

from ptrag.errors import PtragError


def add_parser(sub: Any, name: str, help_text: str) -> None:
    parser = sub.add_parser(name, help=help_text, description=help_text)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    raise PtragError("not implemented yet")
