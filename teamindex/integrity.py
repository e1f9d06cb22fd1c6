"""`teamindex check`: do the rows and the files on disk agree? No Flask here.

Checked: every file row has its file with the recorded size and sha256; every recorded
PEP 658 metadata file exists and matches metadata_sha256; nothing under packages/ lacks a
row (strays: an upload or delete cut short by a crash); nothing in tmp/ is left by a dead
process. Repair moves strays and stale temp files to quarantine/<timestamp>/ (never
deletes: an operator decides) and reports what it cannot fix, such as rows whose file is
missing or damaged.

It is safe while the server runs: the disk is scanned for strays while holding SQLite's
write lock, and ingest publishes a file only inside its own write transaction, so a file
between its rename and its row's commit cannot be mistaken for a stray; temp files whose
owner process is alive (see inflight) are uploads in flight and are left alone.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from .db import Database
from .inflight import is_stale
from .models import FileRecord
from .removal import file_paths
from .storage import Storage, fsync_dir

QUARANTINE = "quarantine"


@dataclass(frozen=True)
class Problem:
    kind: str  # missing, size, sha256, metadata-missing, metadata-sha256, stray, temp
    path: Path
    detail: str
    repaired: bool = False

    def __str__(self) -> str:
        state = " (quarantined)" if self.repaired else ""
        return f"{self.kind}: {self.path}: {self.detail}{state}"


@dataclass
class CheckReport:
    files: int = 0
    bytes: int = 0
    problems: list[Problem] = field(default_factory=list)
    quarantine: Path | None = None

    @property
    def ok(self) -> bool:
        """True when nothing is (still) wrong: every problem found was repaired."""
        return all(problem.repaired for problem in self.problems)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _check_record(storage: Storage, record: FileRecord) -> list[Problem]:
    path = storage.file_path(record.project, record.filename)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return [Problem("missing", path, f"no file for the row of {record.filename}")]
    problems = []
    if size != record.size:
        problems.append(Problem("size", path, f"{size} bytes, the row says {record.size}"))
    elif sha256_file(path) != record.sha256:
        problems.append(Problem("sha256", path, "content differs from the recorded sha256"))
    if record.metadata_sha256 is not None:
        meta = storage.metadata_path(record.project, record.filename)
        try:
            if sha256_file(meta) != record.metadata_sha256:
                problems.append(
                    Problem("metadata-sha256", meta, "differs from the recorded metadata_sha256")
                )
        except FileNotFoundError:
            problems.append(Problem("metadata-missing", meta, "recorded but not on disk"))
    return problems


def _walk_files(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    return sorted(Path(base) / name for base, _dirs, names in os.walk(root) for name in names)


def _quarantine(data_dir: Path, target_dir: Path, path: Path) -> None:
    target = target_dir / path.relative_to(data_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(path, target)
    fsync_dir(path.parent)
    fsync_dir(target.parent)


def check_index(
    db: Database, storage: Storage, data_dir: Path, *, repair: bool = False
) -> CheckReport:
    """Compare rows with files; with repair, quarantine strays and stale temp files."""
    report = CheckReport()
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    quarantine = data_dir / QUARANTINE / stamp
    with db.write_lock():
        records = db.all_files()
        expected = {path for record in records for path in file_paths(storage, record)}
        for path in _walk_files(storage.packages_dir):
            if path not in expected:
                if repair:
                    _quarantine(data_dir, quarantine, path)
                report.problems.append(Problem("stray", path, "no row refers to it", repair))
    for path in _walk_files(storage.tmp_dir):
        if is_stale(storage.tmp_dir, path):
            if repair:
                _quarantine(data_dir, quarantine, path)
            report.problems.append(Problem("temp", path, "left by a dead process", repair))
    # Hashing reads every byte: done outside the lock (published files never change).
    for record in records:
        problems = _check_record(storage, record)
        if problems and problems[0].kind == "missing" and db.get_file(record.filename) is None:
            continue  # deleted since the scan: not damage
        report.problems.extend(problems)
        report.files += 1
        report.bytes += record.size
    if repair and any(problem.repaired for problem in report.problems):
        report.quarantine = quarantine
    return report
