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
from teamindex.index.storage import local as storage_module


@pytest.fixture(params=["threads", "processes"])
def preparer(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Files prepared on threads, or in worker processes as a big import does."""
    if request.param == "processes":
        monkeypatch.setattr(importer, "PROCESS_POOL_AFTER", 1)
        monkeypatch.setattr(importer, "PROCESS_WORKERS", 2)
    return request.param


def corpus(tmp_path: Path, count: int) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    for i in range(count):
        make_wheel(src, f"proj{i % 3}", f"1.{i}")
    return src


def test_batches_import_everything_and_refuse_alone(index, tmp_path, monkeypatch, preparer):  # noqa: F811
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


def _fail_durability(monkeypatch, storage, which: str, batch: int) -> list[list[Path]]:
    """Make Storage.make_durable fail (EIO) for the `batch`-th batch, at its step `which`:
    "temps" (the batch's temp files, before any rename) or "dirs" (the directories of its
    renames, before the COMMIT). Returns the calls seen."""
    real = storage.make_durable
    calls: list[list[Path]] = []

    def failing(paths: list[Path]) -> None:
        calls.append(list(paths))
        step = "dirs" if storage.packages_dir in paths else "temps"
        if (
            step == which
            and sum(("dirs" if storage.packages_dir in c else "temps") == which for c in calls)
            == batch
        ):
            raise OSError(5, "I/O error")
        real(paths)

    monkeypatch.setattr(storage, "make_durable", failing)
    return calls


def _listed(db) -> set[str]:
    return {
        row.filename
        for name in ("proj0", "proj1", "proj2")
        if (project := db.get_project(name)) is not None
        for row in db.project_files(project)
    }


@pytest.mark.parametrize("which", ["temps", "dirs"])
def test_a_batch_that_fails_before_commit_leaves_nothing(
    index,  # noqa: F811
    tmp_path,
    monkeypatch,
    which,
    preparer,
):
    """The second batch fails to make its temp files durable (nothing renamed yet), or its
    renames (files in place, no COMMIT): either way neither its rows nor its files remain,
    no temp file is left, and a re-run imports the rest."""
    db, storage, data = index
    monkeypatch.setattr(importer, "BATCH_FILES", 4)
    src = corpus(tmp_path, 10)
    _fail_durability(monkeypatch, storage, which, batch=2)
    with pytest.raises(OSError, match="I/O error"):
        importer.import_paths(db, storage, [src])
    listed = _listed(db)
    on_disk = {Path(path).name for path in stored_files(data) if not path.endswith(".metadata")}
    assert len(listed) == 4 and on_disk == listed  # the first batch; nothing of the second
    assert temp_files(data) == []
    monkeypatch.undo()
    report = importer.import_paths(db, storage, [src])
    assert (report.imported, report.identical) == (6, 4)
    assert len(stored_files(data)) == 20


def test_a_batch_is_durable_before_renames_and_commit(index, tmp_path, monkeypatch):  # noqa: F811
    """Per batch: the temp files (each wheel and its .metadata) are made durable in one
    call before any of them is renamed, then the directories of the renames before the
    COMMIT; with syncfs no file gets an fsync of its own."""
    db, storage, _data = index
    monkeypatch.setattr(importer, "BATCH_FILES", 4)
    src = corpus(tmp_path, 10)
    events: list[str] = []
    real_durable, real_replace = storage.make_durable, storage_module.os.replace
    fsyncs: list[int] = []
    real_fsync = storage_module.os.fsync

    def durable(paths: list[Path]) -> None:
        temps = [p for p in paths if p.parent == storage.tmp_dir]
        assert all(p.exists() for p in temps)  # not renamed yet
        events.append("dirs" if storage.packages_dir in paths else f"temps:{len(temps)}")
        real_durable(paths)

    def replace(src_path, dst_path) -> None:
        events.append("rename")
        real_replace(src_path, dst_path)

    real_insert = db.insert_files

    def insert_files(rows) -> None:
        events.append("rows")
        real_insert(rows)

    monkeypatch.setattr(storage, "make_durable", durable)
    monkeypatch.setattr(storage_module.os, "replace", replace)
    monkeypatch.setattr(db, "insert_files", insert_files)
    monkeypatch.setattr(storage_module.os, "fsync", lambda fd: fsyncs.append(fd) or real_fsync(fd))
    report = importer.import_paths(db, storage, [src])
    assert report.imported == 10
    compact = [e for i, e in enumerate(events) if i == 0 or e != events[i - 1]]
    assert compact == ["temps:8", "rename", "rows", "dirs"] * 2 + [
        "temps:4",
        "rename",
        "rows",
        "dirs",
    ]
    if storage_module.sync_filesystem(storage.tmp_dir):
        assert fsyncs == []  # one syncfs per step instead


def test_without_syncfs_every_temp_file_and_directory_is_fsynced(index, tmp_path, monkeypatch):  # noqa: F811
    db, storage, _data = index
    monkeypatch.setattr(storage_module, "sync_filesystem", lambda directory: False)
    synced: list[Path] = []
    real = storage_module.fsync_path
    monkeypatch.setattr(storage_module, "fsync_path", lambda p: synced.append(p) or real(p))
    src = corpus(tmp_path, 6)
    report = importer.import_paths(db, storage, [src])
    assert report.imported == 6
    temps = [p for p in synced if p.parent == storage.tmp_dir]
    assert len(temps) == 12  # each wheel and its .metadata, once
    assert {p.name for p in synced if p.parent == storage.packages_dir} == {
        "proj0",
        "proj1",
        "proj2",
    }
    assert storage.packages_dir in synced


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
