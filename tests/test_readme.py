"""The README is the manual: a setting or command it does not mention is a test failure."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from teamindex.cli import build_parser
from teamindex.cli.base import COMMANDS
from teamindex.config import OPTIONS

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


def _commands() -> list[str]:
    build_parser()  # registers the commands of every cli_* module
    return sorted(COMMANDS)


@pytest.mark.parametrize("option", OPTIONS, ids=lambda option: option.name)
def test_every_setting_is_documented(option):
    rows = [line for line in README.splitlines() if line.startswith(f"| `{option.flag}` |")]
    row = rows[0] if rows else None
    assert row is not None, f"{option.flag} is not in the README's settings table"
    assert f"`{option.env}`" in row, f"{option.env} is not on the row of {option.flag}"


@pytest.mark.parametrize("name", _commands())
def test_every_command_is_documented(name):
    assert re.search(rf"`{re.escape(name)}( [^`]*)?`", README), f"`{name}` is not in the README"


def test_the_two_setup_commands_are_there():
    assert "python3 dev.py serve" in README
    assert "python3 dev.py test" in README
