"""teamindex.index.importer: bulk import through the same checks as uploads (no HTTP)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from builders import make_sdist, make_wheel, metadata_text
from uploading import stored_files, temp_files

from teamindex.db import Database
from teamindex.index.importer import find_distributions, import_paths
from teamindex.index.storage import Storage


@pytest.fixture
def index(tmp_path: Path):
    data = tmp_path / "data"
    db = Database(data / "teamindex.sqlite3")
    storage = Storage(data / "packages", data / "tmp")
    storage.ensure_dirs()
    db.migrate()
    yield db, storage, data
    db.close()


def test_find_distributions_filters_and_orders(tmp_path):
    root = tmp_path / "src"
    (root / "b").mkdir(parents=True)
    (root / "a").mkdir()
    for relative in (
        "b/z-1.0.tar.gz",
        "a/y-1.0-py3-none-any.whl",
        "a/x-1.0.zip",
        "a/readme.txt",
        "a/x-1.0.tar.bz2",
        "a/x-1.0.egg",
        "a/y-1.0-py3-none-any.whl.metadata",
    ):
        (root / relative).write_bytes(b"")
    (root / "a" / "dir.whl").mkdir()  # a directory with a dist suffix is not a file
    single = tmp_path / "single-1.0.tar.gz"
    single.write_bytes(b"")
    found = list(find_distributions([root, single, tmp_path / "missing"]))
    assert found == [
        root / "a/x-1.0.zip",
        root / "a/y-1.0-py3-none-any.whl",
        root / "b/z-1.0.tar.gz",
        single,
    ]


def test_import_counts_and_reasons(index, tmp_path):
    db, storage, data = index
    source = tmp_path / "src"
    source.mkdir()
    make_wheel(source, "alpha", "1.0", requires_python=">=3.9")
    make_sdist(source, "alpha", "1.0")
    bad_name = make_wheel(source, "beta", "1.0", filename="Beta-1.0-py3-none-any.whl")
    mismatch = make_wheel(source, "gamma", "1.0", metadata=metadata_text("delta", "1.0"))
    (source / "junk-1.0.tar.gz").write_bytes(b"garbage")

    report = import_paths(db, storage, [source])
    assert (report.imported, report.skipped) == (2, 0)
    reasons = {path.name: reason for path, reason in report.rejected}
    assert reasons == {
        bad_name.name: "Filename 'Beta-1.0-py3-none-any.whl' should contain the normalized "
        "project name 'beta', not 'Beta'.",
        mismatch.name: "Name in metadata 'delta' does not match the filename "
        "'gamma-1.0-py3-none-any.whl' (project 'gamma').",
        "junk-1.0.tar.gz": "Invalid distribution file. File is not a tarfile: not a gzip file",
    }
    assert stored_files(data) == [
        "alpha/alpha-1.0-py3-none-any.whl",
        "alpha/alpha-1.0-py3-none-any.whl.metadata",
        "alpha/alpha-1.0.tar.gz",
    ]
    assert temp_files(data) == []
    project = db.get_project("alpha")
    assert project is not None
    files = db.project_files(project)
    assert [f.filename for f in files] == ["alpha-1.0-py3-none-any.whl", "alpha-1.0.tar.gz"]
    assert files[0].requires_python == ">=3.9"
    assert files[0].metadata_sha256 is not None
    assert files[1].metadata_sha256 is None


def test_reimport_skips_identical_and_refuses_conflicts(index, tmp_path):
    db, storage, data = index
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    original = make_wheel(first, "alpha", "1.0")
    assert import_paths(db, storage, [first]).imported == 1
    serial = db.serial()

    again = import_paths(db, storage, [first])
    assert (again.imported, again.skipped, again.rejected) == (0, 1, [])
    assert db.serial() == serial  # a skip changes nothing

    make_wheel(second, "alpha", "1.0", padding=3)  # same name, other bytes
    conflict = import_paths(db, storage, [second])
    assert (conflict.imported, conflict.skipped) == (0, 0)
    [(path, reason)] = conflict.rejected
    assert path == second / original.name
    assert reason.startswith("File already exists ('alpha-1.0-py3-none-any.whl'")
    assert (data / "packages" / "alpha" / original.name).read_bytes() == original.read_bytes()
    assert temp_files(data) == []


def test_import_progress(index, tmp_path):
    db, storage, _data = index
    for n in range(3):
        make_sdist(tmp_path, "alpha", f"1.{n}")
    progress = io.StringIO()
    report = import_paths(db, storage, [tmp_path], progress=progress)
    assert report.imported == 3
    text = progress.getvalue()
    assert "3/3 files" in text
    assert text.endswith("\n")


def test_import_nothing(index, tmp_path):
    db, storage, _data = index
    report = import_paths(db, storage, [tmp_path])
    assert (report.imported, report.skipped, report.rejected) == (0, 0, [])
