"""Issue 10 (low 16): the data dir, its database and session key, and backups are owner-only
whatever the umask (outside systemd the database was 0644, backups 0755/0644)."""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import FAST_HASH

from teamindex.app import create_app
from teamindex.config import Settings
from teamindex.index.backup import backup
from teamindex.index.docstore import DocsStore


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(params=[0o022, 0o000], ids=["umask-022", "umask-000"])
def umask(request) -> Iterator[int]:
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def _services(data_dir: Path):
    return create_app(Settings(data_dir=data_dir, password_hash=FAST_HASH)).extensions["teamindex"]


def test_new_data_dir_and_backup_are_private(tmp_path, umask):
    data_dir = tmp_path / "data"
    svc = _services(data_dir)
    svc.db.conn.execute("SELECT 1")  # WAL files exist while a connection is open
    assert mode(data_dir) == 0o700
    for name in ("teamindex.sqlite3", "secret_key"):
        assert mode(data_dir / name) == 0o600, name
    dest = tmp_path / "backup"
    backup(svc.db, svc.storage, DocsStore.in_data_dir(data_dir), dest)
    assert mode(dest) == 0o700
    assert mode(dest / "teamindex.sqlite3") == 0o600
    svc.db.close()


def test_an_existing_wide_data_dir_is_tightened_with_a_log_line(tmp_path, caplog):
    data_dir = tmp_path / "data"
    svc = _services(data_dir)
    svc.db.close()
    os.chmod(data_dir, 0o755)
    os.chmod(data_dir / "teamindex.sqlite3", 0o644)
    with caplog.at_level(logging.WARNING, logger="teamindex"):
        svc2 = _services(data_dir)
    svc2.db.close()
    assert mode(data_dir) == 0o700
    assert mode(data_dir / "teamindex.sqlite3") == 0o600
    assert "made" in caplog.text and "private" in caplog.text


@pytest.mark.usefixtures("umask")
def test_a_fresh_install_logs_no_tightening(tmp_path, caplog):
    """A data dir created at start-up is 0700 from its mkdir: no "made ... private" warning,
    which would claim password hashes were readable by others when nothing existed."""
    with caplog.at_level(logging.WARNING, logger="teamindex"):
        svc = _services(tmp_path / "new" / "data")
    svc.db.close()
    assert mode(tmp_path / "new" / "data") == 0o700
    assert "private" not in caplog.text, caplog.text
