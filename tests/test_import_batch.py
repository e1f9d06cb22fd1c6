"""The import records files in batches (issue 14): one transaction and one fsync per
directory for many files, still files before rows. A refused file leaves the rest of its
batch; a batch that fails to commit leaves neither rows nor files, and a re-run imports it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from builders import make_wheel
from test_importer import index  # noqa: F401 (the fixture)
from uploading import stored_files, temp_files

from teamindex.index import importer, ingest
from teamindex.index.storage import local as storage_local


def corpus(tmp_path: Path, count: int) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    for i in range(count):
        make_wheel(src, f"proj{i % 3}", f"1.{i}")
    return src


def test_batches_import_everything_and_refuse_alone(index, tmp_path, monkeypatch):  # noqa: F811
    db, storage, data = index
    monkeypatch.setattr(importer, "BATCH_FILES", 4)
    src = corpus(tmp_path, 10)
    clash = tmp_path / "clash"
    clash.mkdir()
    make_wheel(clash, "proj0", "1.3", summary="other bytes")  # same name as src's, other bytes
    report = importer.import_paths(db, storage, [clash, src])
    assert (report.imported, report.identical) == (10, 0)
    assert [(p.name, why[:19]) for p, why in report.rejected] == [
        ("proj0-1.3-py3-none-any.whl", "File already exists")
    ]
    assert len(stored_files(data)) == 20  # 10 wheels and their .metadata
    assert temp_files(data) == []


def test_a_batch_that_fails_before_commit_leaves_nothing(index, tmp_path, monkeypatch):  # noqa: F811
    db, storage, data = index
    monkeypatch.setattr(importer, "BATCH_FILES", 4)
    src = corpus(tmp_path, 10)
    real_fsync = storage_local.fsync_dir
    calls = {"n": 0}

    def failing_second_batch(path: Path) -> None:
        if path == storage.packages_dir:
            calls["n"] += 1
            if calls["n"] == 2:
                raise OSError(5, "I/O error")
        real_fsync(path)

    monkeypatch.setattr(storage_local, "fsync_dir", failing_second_batch)
    with pytest.raises(OSError, match="I/O error"):
        importer.import_paths(db, storage, [src])
    listed = {
        row.filename
        for name in ("proj0", "proj1", "proj2")
        if (project := db.get_project(name)) is not None
        for row in db.project_files(project)
    }
    on_disk = {Path(path).name for path in stored_files(data) if not path.endswith(".metadata")}
    assert len(listed) == 4 and on_disk == listed  # the first batch; nothing of the second
    assert temp_files(data) == []
    monkeypatch.setattr(storage_local, "fsync_dir", real_fsync)
    report = importer.import_paths(db, storage, [src])
    assert (report.imported, report.identical) == (6, 4)
    assert len(stored_files(data)) == 20


def test_a_batch_costs_a_few_statements_not_a_dozen_per_file(index, tmp_path, monkeypatch):  # noqa: F811
    """~13 statements per file held an import under 500 files/s: a batch now reads what the
    duplicate rules need per batch and per project, and writes its rows together."""
    db, storage, _data = index
    src = corpus(tmp_path, 30)
    statements: list[str] = []
    real_batch = ingest.ingest_batch

    def traced(*args, **kwargs):
        db.conn.set_trace_callback(statements.append)
        try:
            return real_batch(*args, **kwargs)
        finally:
            db.conn.set_trace_callback(None)

    monkeypatch.setattr(importer, "ingest_batch", traced)
    report = importer.import_paths(db, storage, [src])
    assert report.imported == 30
    # Every file here is its own release (one INSERT each): at most 3 per file; was ~13.
    assert len(statements) <= 3 * 30, statements


def test_one_batch_applies_the_duplicate_rules_in_order(index, tmp_path):  # noqa: F811
    """Files that meet inside one batch: identical bytes twice, another spelling of the
    same bytes, and other bytes under a name the batch already stored."""
    db, storage, data = index
    first, second, third = (tmp_path / name for name in ("a", "b", "c"))
    for folder in (first, second, third):
        folder.mkdir()
    wheel = make_wheel(first, "proj0", "1.0")
    (second / wheel.name).write_bytes(wheel.read_bytes())  # identical, same name
    (second / wheel.name.replace("proj0", "Proj0")).write_bytes(wheel.read_bytes())  # spelling
    make_wheel(third, "proj0", "1.0", summary="other bytes")  # same name, other bytes
    report = importer.import_paths(db, storage, [first, second, third])
    assert (report.imported, report.identical) == (1, 2)
    assert [why[:19] for _p, why in report.rejected] == ["File already exists"]
    assert len(stored_files(data)) == 2  # one wheel and its .metadata
    assert temp_files(data) == []
