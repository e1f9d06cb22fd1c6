"""A big import prepares its files in worker processes (issue 14: one GIL held an import
to one core). The workers' temp files belong to the importing process's owner lock; a
kill -9 of the import ends its workers too, lists nothing without its file, and a re-run
imports the rest."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest
from builders import make_wheel
from ops_support import cli_env, run_cli
from test_importer import index  # noqa: F401 (the fixture)
from uploading import stored_files, temp_files

from teamindex.db import Database
from teamindex.index import importer
from teamindex.index.inflight import TempOwner, owner_alive, owner_token

WAIT_SECONDS = 60.0


def test_a_big_import_prepares_in_worker_processes(index, tmp_path, monkeypatch):  # noqa: F811
    db, storage, data = index
    monkeypatch.setattr(importer, "PROCESS_POOL_AFTER", 8)
    monkeypatch.setattr(importer, "PROCESS_WORKERS", 2)
    monkeypatch.setattr(importer, "BATCH_FILES", 4)
    monkeypatch.setattr(importer, "PROCESS_CHUNK", 3)
    src = tmp_path / "src"
    src.mkdir()
    for i in range(10):
        make_wheel(src, f"proj{i % 3}", f"1.{i}")
    submitted: list[int] = []

    class Recording(ProcessPoolExecutor):
        def submit(self, fn, /, *args, **kwargs):  # type: ignore[no-untyped-def]
            submitted.append(len(args[0]))
            return super().submit(fn, *args, **kwargs)

    tokens: set[str | None] = set()
    real_durable = storage.make_durable

    def durable(paths: list[Path]) -> None:
        tokens.update(owner_token(p.name) for p in paths if p.parent == storage.tmp_dir)
        real_durable(paths)

    monkeypatch.setattr(importer, "ProcessPoolExecutor", Recording)
    monkeypatch.setattr(storage, "make_durable", durable)
    report = importer.import_paths(db, storage, [src])
    assert (report.imported, report.identical, report.rejected) == (10, 0, [])
    assert submitted == [3, 1] * 2 + [2]  # batches of 4 in chunks of 3, then the last 2
    assert tokens == {storage.owner.token}  # the workers' temp files are this process's
    assert len(stored_files(data)) == 20
    assert temp_files(data) == []
    for name, row in db.files_named([p.name for p in src.iterdir()]).items():
        assert hashlib.sha256((src / name).read_bytes()).hexdigest() == row.sha256


def test_a_borrowed_owner_token_never_takes_or_drops_the_lock(tmp_path):
    owner = TempOwner(tmp_path)
    token = owner.token
    borrowed = TempOwner(tmp_path, token)
    assert borrowed.prefix("upload") == owner.prefix("upload") == f"upload-{token}-"
    borrowed.release()
    assert owner_alive(tmp_path, token)
    assert [p.name for p in tmp_path.iterdir()] == [f"owner-{token}.lock"]
    owner.release()
    assert not owner_alive(tmp_path, token)


def _descendants(pid: int) -> set[int]:
    """Every process below `pid`, from /proc (Linux)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(parent, []).append(int(entry.name))
    found: set[int] = set()
    pending = [pid]
    while pending:
        for child in children.get(pending.pop(), []):
            found.add(child)
            pending.append(child)
    return found


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has stopped; its new parent reaps it


def _packaged(data: Path) -> int:
    packages = data / "packages"
    if not packages.exists():
        return 0
    return sum(1 for p in packages.rglob("*.whl") if p.is_file())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_kill_9_of_an_import_ends_its_workers_and_a_rerun_imports_the_rest(tmp_path):
    """Killed while its second batch is being renamed into place (so the first is
    committed): the workers exit, every row listed has its file with its bytes, and a
    re-run imports the rest, counting what was committed as identical."""
    count = importer.PROCESS_POOL_AFTER + importer.BATCH_FILES // 2  # three batches
    src = tmp_path / "src"
    src.mkdir()
    for i in range(count):
        make_wheel(src, f"proj{i % 3}", f"1.{i}")
    data = tmp_path / "data"
    proc = subprocess.Popen(
        [sys.executable, "-m", "teamindex", "import", "--quiet", str(src)],
        env=cli_env(data),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + WAIT_SECONDS
        while _packaged(data) <= importer.BATCH_FILES:
            assert proc.poll() is None, "the import ended before the kill"
            assert time.monotonic() < deadline, "the import did not get past its first batch"
            time.sleep(0.005)
        workers = _descendants(proc.pid)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(WAIT_SECONDS)
    assert len(workers) >= 2  # the fork server and its workers (and a resource tracker)
    deadline = time.monotonic() + WAIT_SECONDS
    while any(_running(pid) for pid in workers):
        assert time.monotonic() < deadline, "workers outlived the import"
        time.sleep(0.05)

    db = Database(data / "teamindex.sqlite3")
    try:
        rows = db.files_named([p.name for p in src.iterdir()])
        assert importer.BATCH_FILES <= len(rows) < count
        for name, row in rows.items():  # nothing listed without its file
            stored = data / "packages" / row.project / name
            assert hashlib.sha256(stored.read_bytes()).hexdigest() == row.sha256
            assert (stored.parent / (name + ".metadata")).is_file()
        committed = len(rows)
    finally:
        db.close()
    rerun = run_cli(data, "import", "--quiet", str(src), timeout=WAIT_SECONDS)
    assert rerun.returncode == 0, rerun.stderr
    assert rerun.stdout.splitlines()[-1].startswith(
        f"imported {count - committed}, identical {committed}, "
    )
    assert len(stored_files(data)) == 2 * count
