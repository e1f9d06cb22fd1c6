"""Issue 10 (low 9): a delete racing an identical re-upload, made deterministic.

A delete commits its rows first and unlinks the files after; an identical re-upload that
lands in between (allowed: same bytes as the deleted file) used to lose its fresh file to the
delete's unlink, leaving a row without a file, and a later re-upload restored the file but
never its .metadata, which stayed 404 while the simple page advertised it.
"""

from __future__ import annotations

import pytest
from builders import make_wheel
from conftest import basic
from uploading import upload

from teamindex.index.docstore import DocsStore
from teamindex.index.removal import delete_dists

WHEEL = "foo-1.0-py3-none-any.whl"


@pytest.fixture
def wheel(tmp_path):
    return make_wheel(tmp_path, "foo", "1.0")


def _files(settings):
    return {p.name for p in (settings.packages_dir / "foo").iterdir()}


def _served(client) -> tuple[int, int]:
    statuses = []
    for url in (f"/files/foo/{WHEEL}", f"/files/foo/{WHEEL}.metadata"):
        response = client.get(url, headers=basic("alice"))
        statuses.append(response.status_code)
        response.close()
    return statuses[0], statuses[1]


def test_reupload_between_delete_commit_and_unlink_keeps_its_files(
    app, client, settings, wheel, monkeypatch
):
    assert upload(client, wheel).status_code == 200
    svc = app.extensions["teamindex"]
    real_delete_files = svc.db.delete_files
    reuploads = []

    def delete_files_then_reupload(*args, **kwargs):
        records = real_delete_files(*args, **kwargs)  # committed: rows gone
        reuploads.append(upload(client, wheel).status_code)  # the racing identical upload
        return records

    monkeypatch.setattr(svc.db, "delete_files", delete_files_then_reupload)
    deleted = delete_dists(
        svc.db, svc.storage, DocsStore.in_data_dir(settings.data_dir), "foo", filename=WHEEL
    )
    assert [r.filename for r in deleted] == [WHEEL]
    assert reuploads == [200]
    assert svc.db.get_file(WHEEL) is not None
    assert _files(settings) == {WHEEL, WHEEL + ".metadata"}
    assert _served(client) == (200, 200)


def test_identical_reupload_heals_a_missing_file_and_metadata(client, settings, wheel):
    assert upload(client, wheel).status_code == 200
    for name in (WHEEL, WHEEL + ".metadata"):
        (settings.packages_dir / "foo" / name).unlink()
    assert _served(client) == (404, 404)
    response = upload(client, wheel)
    assert response.status_code == 200
    assert (
        response.get_data(as_text=True)
        == f"{WHEEL} was missing from storage; restored from this upload."
    )
    assert _served(client) == (200, 200)
    metadata = (settings.packages_dir / "foo" / (WHEEL + ".metadata")).read_bytes()
    assert metadata.startswith(b"Metadata-Version")


def test_identical_reupload_heals_a_missing_metadata_alone(client, settings, wheel):
    assert upload(client, wheel).status_code == 200
    (settings.packages_dir / "foo" / (WHEEL + ".metadata")).unlink()
    assert upload(client, wheel).status_code == 200
    assert _served(client) == (200, 200)
