"""A full disk: every stage of an upload that cannot be written answers 507 and leaves nothing
behind (no temp file, no package file, no row). Faults are injected where the bytes meet the
disk, and for SQLite by capping the database's page count (a real SQLITE_FULL)."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from builders import metadata_text
from conftest import basic
from ops_support import big_wheel
from uploading import encode_multipart, stored_files, temp_files, upload
from web_support import docs_zip, seed

from teamindex.context import services
from teamindex.index.storage import local as storage_module

INSUFFICIENT = "507 Insufficient storage: the index's disk is full."


def enospc(*_args, **_kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.fixture
def wheel(tmp_path: Path) -> Path:
    """200 KB of random bytes (so the multipart parser writes it in many chunks) and a
    200 KB description (so its row needs new database pages)."""
    metadata = metadata_text("demo", "1.0", description="long " * 40_000)
    return big_wheel(tmp_path, "demo", "1.0", 200_000, metadata=metadata)


def assert_nothing_left(client, settings) -> None:
    assert stored_files(settings.data_dir) == []
    assert temp_files(settings.data_dir) == []
    assert client.get("/simple/demo/", headers=basic("alice")).status_code == 404


def test_write_fails_midway(client, settings, wheel, monkeypatch):
    real_write = storage_module.HashingTempFile.write

    def write(self, data):
        if self._size + len(data) > 50_000:
            enospc()
        return real_write(self, data)

    monkeypatch.setattr(storage_module.HashingTempFile, "write", write)
    response = upload(client, wheel)
    assert response.status == INSUFFICIENT
    assert_nothing_left(client, settings)


def test_fsync_of_the_upload_fails(client, settings, wheel, monkeypatch):
    monkeypatch.setattr(storage_module.os, "fsync", enospc)
    response = upload(client, wheel)
    assert response.status == INSUFFICIENT
    assert_nothing_left(client, settings)


def test_metadata_file_cannot_be_written(client, settings, wheel, monkeypatch):
    monkeypatch.setattr(storage_module.Storage, "write_temp", lambda self, data: enospc())
    response = upload(client, wheel)
    assert response.status == INSUFFICIENT
    assert_nothing_left(client, settings)


def test_rename_into_place_fails(client, settings, wheel, monkeypatch):
    monkeypatch.setattr(storage_module, "fsync_dir", enospc)
    response = upload(client, wheel)
    assert response.status == INSUFFICIENT
    assert_nothing_left(client, settings)


def test_database_full(app, client, settings, wheel, tmp_path):
    """SQLITE_FULL on the insert or the commit is the same condition: 507, files removed."""
    with app.app_context():
        db = services().db
        pages = db.conn.execute("PRAGMA page_count").fetchone()[0]
        db.conn.execute(f"PRAGMA max_page_count = {pages}")
    response = upload(client, wheel)
    assert response.status == INSUFFICIENT
    assert_nothing_left(client, settings)
    with app.app_context():
        services().db.conn.execute("PRAGMA max_page_count = 1073741823")
    assert upload(client, wheel).status_code == 200  # and it recovers once there is room


def test_the_index_recovers_after_disk_full(client, settings, wheel, monkeypatch):
    monkeypatch.setattr(storage_module.os, "fsync", enospc)
    assert upload(client, wheel).status_code == 507
    monkeypatch.undo()
    assert upload(client, wheel).status_code == 200
    assert stored_files(settings.data_dir) == [
        "demo/demo-1.0-py3-none-any.whl",
        "demo/demo-1.0-py3-none-any.whl.metadata",
    ]


def test_multipart_docs_upload_on_a_full_disk_is_507(app, client, settings, tmp_path, monkeypatch):
    """Issue 10 (low 14): the docs upload's multipart parse hit ENOSPC and answered 500."""
    seed(app, client, tmp_path / "dists")
    monkeypatch.setattr(storage_module.HashingTempFile, "write", enospc)
    body, content_type = encode_multipart([], ("docs.zip", docs_zip(), "application/zip"))
    response = client.post(
        "/docs/team-demo/1.1/", data=body, content_type=content_type, headers=basic("alice")
    )
    assert response.status == INSUFFICIENT
    assert temp_files(settings.data_dir) == []
