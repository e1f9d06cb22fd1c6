"""teamindex.index.importer: bulk import through the same checks as uploads (no HTTP)."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from builders import make_sdist, make_wheel, metadata_text
from uploading import stored_files, temp_files

from teamindex.db import Database
from teamindex.index.importer import find_files, import_paths, skip_reason
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


def test_find_files_lists_every_file_in_order(tmp_path):
    root = tmp_path / "src"
    (root / "b").mkdir(parents=True)
    (root / "a").mkdir()
    for relative in ("b/z-1.0.tar.gz", "a/y-1.0-py3-none-any.whl", "a/readme.txt", "a/x.egg"):
        (root / relative).write_bytes(b"")
    (root / "a" / "dir.whl").mkdir()  # a directory with a dist suffix is not a file
    single = tmp_path / "single-1.0.tar.bz2"
    single.write_bytes(b"")
    found = list(find_files([root, single, tmp_path / "missing"]))
    assert found == [
        root / "a/readme.txt",
        root / "a/x.egg",
        root / "a/y-1.0-py3-none-any.whl",
        root / "b/z-1.0.tar.gz",
        single,
    ]


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("x-1.0-py3-none-any.whl", None),
        ("x-1.0.tar.gz", None),
        ("x-1.0.zip", None),
        ("docs.zip", None),  # named like a distribution: imported or rejected, never skipped
        ("x-1.0-py2.7.egg", "egg"),
        ("x-1.0.tar.bz2", "old sdist format"),
        ("x-1.0.tgz", "old sdist format"),
        ("x-1.0.win32.exe", "installer"),
        ("x-1.0.win-amd64.msi", "installer"),
        ("x-1.0-1.noarch.rpm", "installer"),
        ("x-1.0-py3-none-any.whl.metadata", "metadata"),
        ("x-1.0.tar.gz.asc", "signature"),
        ("README.txt", "other"),
        (".DS_Store", "other"),
        ("x-1.0.WHL", "other"),
    ],
)
def test_skip_reason(name, kind):
    found = skip_reason(name)
    assert (found[0] if found else None) == kind
    if found:
        assert found[1]


def test_import_counts_and_reasons(index, tmp_path):
    db, storage, data = index
    source = tmp_path / "src"
    source.mkdir()
    make_wheel(source, "alpha", "1.0", requires_python=">=3.9")
    make_sdist(source, "alpha", "1.0")
    bad_name = make_wheel(source, "Beta", "1.0", legacy=True, metadata=metadata_text("zeta", "1.0"))
    mismatch = make_wheel(source, "gamma", "1.0", metadata=metadata_text("delta", "1.0"))
    (source / "junk-1.0.tar.gz").write_bytes(b"garbage")

    report = import_paths(db, storage, [source])
    assert (report.imported, report.identical) == (2, 0)
    reasons = {path.name: reason for path, reason in report.rejected}
    assert reasons == {
        bad_name.name: "Name in metadata 'zeta' does not match the filename "
        "'Beta-1.0-py3-none-any.whl' (project 'beta').",
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


def test_import_legacy_spellings(index, tmp_path):
    """A pypiserver directory as it is: wheels and sdists named as their projects spell
    themselves (issue 12); stored under those names, one file per normalized filename."""
    db, storage, data = index
    source = tmp_path / "src"
    (source / "more").mkdir(parents=True)
    django = make_wheel(source, "Django", "3.2.25", legacy=True)
    make_wheel(source, "ruamel.yaml", "0.17.21", legacy=True)
    make_sdist(source, "zope.interface", "6.0", filename="zope.interface-6.0.tar.gz")
    # The same wheel again under today's spelling (a copy from another mirror): one file.
    (source / "more" / "django-3.2.25-py3-none-any.whl").write_bytes(django.read_bytes())
    report = import_paths(db, storage, [source])
    assert (report.imported, report.identical, report.rejected) == (3, 1, [])
    assert stored_files(data) == [
        "django/Django-3.2.25-py3-none-any.whl",
        "django/Django-3.2.25-py3-none-any.whl.metadata",
        "ruamel-yaml/ruamel.yaml-0.17.21-py3-none-any.whl",
        "ruamel-yaml/ruamel.yaml-0.17.21-py3-none-any.whl.metadata",
        "zope-interface/zope.interface-6.0.tar.gz",
    ]
    project = db.get_project("ruamel-yaml")
    assert project is not None and project.display_name == "ruamel.yaml"


def test_reimport_skips_identical_and_refuses_conflicts(index, tmp_path):
    db, storage, data = index
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    original = make_wheel(first, "alpha", "1.0")
    assert import_paths(db, storage, [first]).imported == 1
    serial = db.serial()

    again = import_paths(db, storage, [first])
    assert (again.imported, again.identical, again.rejected) == (0, 1, [])
    assert db.serial() == serial  # a skip changes nothing

    make_wheel(second, "alpha", "1.0", padding=3)  # same name, other bytes
    conflict = import_paths(db, storage, [second])
    assert (conflict.imported, conflict.identical) == (0, 0)
    [(path, reason)] = conflict.rejected
    assert path == second / original.name
    assert reason.startswith("File already exists ('alpha-1.0-py3-none-any.whl'")
    assert (data / "packages" / "alpha" / original.name).read_bytes() == original.read_bytes()
    assert temp_files(data) == []


def test_import_progress(index, tmp_path):
    db, storage, _data = index
    source = tmp_path / "src"
    source.mkdir()
    for n in range(3):
        make_sdist(source, "alpha", f"1.{n}")
    (source / "alpha-0.9.tar.bz2").write_bytes(b"")
    progress = io.StringIO()
    report = import_paths(db, storage, [source], progress=progress)
    assert report.imported == 3
    text = progress.getvalue()
    assert "4/4 files" in text  # every file counts, the skipped one too
    assert text.endswith("\n")


def test_import_nothing(index, tmp_path):
    db, storage, _data = index
    (tmp_path / "empty").mkdir()
    report = import_paths(db, storage, [tmp_path / "empty"])
    assert (report.imported, report.identical, report.skipped, report.rejected) == (0, 0, [], [])
    assert report.summary() == "imported 0, identical 0, skipped 0, rejected 0"


def test_import_reports_every_file_it_leaves_out(index, tmp_path):
    """A pypiserver directory of 6 files: 2 imported, 4 skipped, each with its reason."""
    db, storage, data = index
    source = tmp_path / "src"
    source.mkdir()
    make_wheel(source, "alpha", "1.0")
    make_sdist(source, "alpha", "1.0")
    for name in ("alpha-0.9-py2.7.egg", "alpha-0.8.tar.bz2", "alpha-0.7.win32.exe", "notes.txt"):
        (source / name).write_bytes(b"x")
    report = import_paths(db, storage, [source])
    assert report.summary() == (
        "imported 2, identical 0, skipped 4 (1 egg, 1 installer, 1 old sdist format, "
        "1 other), rejected 0"
    )
    assert sorted((path.name, reason) for path, reason in report.skipped) == [
        (
            "alpha-0.7.win32.exe",
            "installer (bdist_wininst/msi/rpm), not installable by pip (PEP 527)",
        ),
        ("alpha-0.8.tar.bz2", "sdist format not accepted since PEP 527 (only .tar.gz and .zip)"),
        ("alpha-0.9-py2.7.egg", "egg: pip cannot install eggs from an index (PEP 527, PEP 715)"),
        ("notes.txt", "not a distribution (expected .whl, .tar.gz or .zip)"),
    ]
    assert report.rejected == []
    assert len(stored_files(data)) == 3  # the wheel, its .metadata, the sdist


def test_import_keep_times_takes_upload_time_from_mtime(index, tmp_path):
    db, storage, _data = index
    source = tmp_path / "src"
    source.mkdir()
    old = make_wheel(source, "alpha", "1.0")
    new = make_sdist(source, "beta", "1.0")
    moment = 1_500_000_000.25  # 2017-07-14T02:40:00.25Z
    os.utime(old, (moment, moment))
    report = import_paths(db, storage, [source], keep_times=True)
    assert report.imported == 2
    [alpha] = db.project_files(db.get_project("alpha"))
    assert alpha.upload_time == "2017-07-14T02:40:00.250000Z"
    # Without the flag: the time of the import.
    other = tmp_path / "other"
    other.mkdir()
    os.utime(make_wheel(other, "gamma", "1.0"), (moment, moment))
    import_paths(db, storage, [other])
    [gamma] = db.project_files(db.get_project("gamma"))
    assert gamma.upload_time > "2020"
    assert new.exists()
