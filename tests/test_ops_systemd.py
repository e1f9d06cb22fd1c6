"""systemd/teamindex.service: foreground serve, restart on failure, a stop timeout longer than
the server's own drain, the hardening the issue asks for, and `systemd-analyze verify`."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from teamindex.config import OPTIONS
from teamindex.ops.serving import GRACE_SECONDS

ROOT = Path(__file__).resolve().parents[1]
UNIT = ROOT / "systemd" / "teamindex.service"
ENV_EXAMPLE = ROOT / "systemd" / "env.example"


def directives() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def seconds(value: str) -> float:
    return float(value.removesuffix("s"))


def test_runs_the_server_in_the_foreground_as_its_own_user():
    unit = directives()
    assert unit["ExecStart"] == ["/opt/teamindex/bin/python -m teamindex serve"]
    assert unit["Type"] == ["simple"]
    assert unit["User"] == ["teamindex"]
    assert unit["EnvironmentFile"] == ["/etc/teamindex/env"]
    assert unit["Restart"] == ["on-failure"]
    assert "TEAMINDEX_DATA_DIR=/var/lib/teamindex" in unit["Environment"]
    assert unit["KillSignal"] == ["SIGTERM"]
    assert seconds(unit["TimeoutStopSec"][0]) > GRACE_SECONDS + 5


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ReadWritePaths", "/var/lib/teamindex"),
        ("PrivateTmp", "yes"),
        ("ProtectHome", "yes"),
        ("PrivateDevices", "yes"),
        ("RestrictSUIDSGID", "yes"),
        ("CapabilityBoundingSet", ""),
    ],
)
def test_hardening(key, value):
    assert directives()[key] == [value]


def test_env_example_names_only_real_settings():
    known = {option.env for option in OPTIONS}
    for line in ENV_EXAMPLE.read_text().splitlines():
        name = line.lstrip("#").split("=", 1)[0].strip()
        if name.startswith("TEAMINDEX_"):
            assert name in known, name


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
def test_systemd_analyze_verify(tmp_path):
    # verify insists that ExecStart exists: point it at this interpreter.
    unit = tmp_path / "teamindex.service"
    unit.write_text(UNIT.read_text().replace("/opt/teamindex/bin/python", sys.executable))
    result = subprocess.run(
        ["systemd-analyze", "verify", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "teamindex.service" not in result.stderr, result.stderr  # no warnings about it
