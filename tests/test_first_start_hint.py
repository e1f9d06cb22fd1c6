"""The first-start hint names the command as the admin runs it (issue 12): `teamindex adduser`
when started as `teamindex serve`, `python3 dev.py teamindex adduser` through dev.py."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from ops_support import cli_env

ROOT = Path(__file__).resolve().parents[1]
HINT = "Create the first admin with:"


def _first_start_log(cmd: list[str], data_dir: Path, log: Path) -> str:
    """Start a server on an empty data dir, wait (bounded) for the hint, stop it."""
    with log.open("wb") as handle:
        process = subprocess.Popen(
            cmd,
            env=cli_env(data_dir),
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=handle,
            stderr=handle,
        )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and process.poll() is None:
            text = log.read_text(errors="replace")
            if "adduser NAME" in text:
                return text
            time.sleep(0.05)
        raise AssertionError(f"no first-start hint:\n{log.read_text(errors='replace')}")
    finally:
        process.terminate()
        process.wait(10)


@pytest.mark.parametrize(
    ("launch", "expected"),
    [
        ([sys.executable, "-m", "teamindex", "serve"], "    teamindex adduser NAME --admin"),
        (
            [sys.executable, str(ROOT / "dev.py"), "serve"],
            "    python3 dev.py teamindex adduser NAME --admin",
        ),
    ],
)
def test_first_start_hint_names_the_command_as_launched(tmp_path, launch, expected):
    text = _first_start_log([*launch, "--port", "0"], tmp_path / "data", tmp_path / "log")
    hint = text.split(HINT, 1)[1].splitlines()[1]
    assert hint == f"{expected} --data-dir {tmp_path / 'data'}"
