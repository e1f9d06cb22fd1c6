"""`teamindex check`: do the rows and the files on disk agree? No Flask here.

Checked: every file row has its file with the recorded size and sha256; every recorded
PEP 658 metadata file exists and matches metadata_sha256; nothing under packages/ lacks a
row (strays: an upload or delete cut short by a crash); nothing in tmp/ is left by a dead
process. Hosted docs: every docs row has its build directory with the recorded number of
files and bytes; nothing else sits under docs/ (builds without a row: a re-upload or delete
cut short), nor in docs/.incoming (an upload's unpacking cut short). Repair moves strays,
stale temp files and docs debris to quarantine/<timestamp>/ (never deletes: an operator
decides) and reports what it cannot fix, such as rows whose file or docs are missing or
damaged. A package file or .metadata whose bytes do not match its row is quarantined too,
and the row kept: the file is then missing (downloads answer 404 saying so, check exits 1)
until an upload of the same file restores it (ingest: the row says what the bytes must be).

It is safe while the server runs: the disk is scanned for strays while holding SQLite's
write lock, and ingest publishes a file only inside its own write transaction, so a file
between its rename and its row's commit cannot be mistaken for a stray; temp files whose
owner process is alive (see inflight) are uploads in flight and are left alone. A docs
upload renames its build into place before it commits the row, outside the write lock, and
unpacks in .incoming without an owner lock, so docs debris counts only once nothing in it
has changed for DOCS_GRACE_SECONDS (an upload in flight writes continuously, and waits at
most SQLite's 30 s busy timeout for its commit).
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

from ..db import Database
from ..models import DocsBuild, FileRecord
from .docstore import INCOMING, DocsStore, build_files
from .inflight import is_stale
from .progress import Progress
from .removal import file_paths
from .storage import Storage, fsync_dir

QUARANTINE = "quarantine"
DOCS_GRACE_SECONDS = 600.0


# Files whose bytes do not match their row: --repair quarantines them (the row stays, and
# says what the bytes must be), and an identical re-upload restores them (ingest).
DAMAGE = {"size": "missing", "sha256": "missing", "metadata-sha256": "metadata-missing"}


@dataclass(frozen=True)
class Problem:
    # missing, size, sha256, metadata-missing, metadata-sha256, stray, temp,
    # docs-missing, docs-size, docs-stray, docs-incoming
    kind: str
    path: Path
    detail: str
    repaired: bool = False
    # (st_dev, st_ino) of the damaged file as hashed: repair moves only that very file.
    identity: tuple[int, int] | None = field(default=None, compare=False)

    def __str__(self) -> str:
        state = " (quarantined)" if self.repaired else ""
        return f"{self.kind}: {self.path}: {self.detail}{state}"


@dataclass
class CheckReport:
    files: int = 0
    bytes: int = 0
    docs: int = 0  # docs builds checked
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


def _reupload_hint(record: FileRecord) -> str:
    return f"upload {record.filename} again (the same file) to restore it"


def _identity(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_dev, stat.st_ino


def _check_record(storage: Storage, record: FileRecord) -> list[Problem]:
    path = storage.file_path(record.project, record.filename)
    try:
        stat = path.stat()
    except FileNotFoundError:
        return [
            Problem(
                "missing",
                path,
                f"no file for the row of {record.filename}; " + _reupload_hint(record),
            )
        ]
    problems = []
    identity = (stat.st_dev, stat.st_ino)
    if stat.st_size != record.size:
        detail = f"{stat.st_size} bytes, the row says {record.size}"
        problems.append(Problem("size", path, detail, identity=identity))
    elif sha256_file(path) != record.sha256:
        detail = "content differs from the recorded sha256"
        problems.append(Problem("sha256", path, detail, identity=identity))
    if record.metadata_sha256 is not None:
        meta = storage.metadata_path(record.project, record.filename)
        try:
            meta_identity = _identity(meta)
            if sha256_file(meta) != record.metadata_sha256:
                detail = "differs from the recorded metadata_sha256"
                problems.append(Problem("metadata-sha256", meta, detail, identity=meta_identity))
        except FileNotFoundError:
            detail = f"recorded but not on disk; {_reupload_hint(record)}"
            problems.append(Problem("metadata-missing", meta, detail))
    return problems


def _quarantine_damage(
    db: Database, data_dir: Path, quarantine: Path, record: FileRecord, problems: list[Problem]
) -> list[Problem]:
    """Move damaged files (bytes not matching their row) to quarantine, keeping the row;
    each becomes a missing file that an identical re-upload restores.

    Under the write lock, and only if the row is unchanged and the path still names the
    file that was hashed: a delete (and an identical re-upload) may have happened since."""
    if not any(problem.kind in DAMAGE for problem in problems):
        return problems
    result = []
    with db.write_lock():
        current = db.get_file(record.filename)
        for problem in problems:
            try:
                same = problem.identity == _identity(problem.path)
            except FileNotFoundError:
                same = False
            if (
                problem.kind not in DAMAGE
                or current is None
                or current.sha256 != record.sha256
                or not same
            ):
                result.append(problem)
                continue
            _quarantine(data_dir, quarantine, problem.path)
            result.append(replace(problem, repaired=True))
            detail = f"quarantined as damaged; {_reupload_hint(record)}"
            result.append(Problem(DAMAGE[problem.kind], problem.path, detail))
    return result


def _walk_files(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    return sorted(Path(base) / name for base, _dirs, names in os.walk(root) for name in names)


def _check_docs_build(docs: DocsStore, build: DocsBuild) -> Problem | None:
    path = docs.build_dir(build.project, build.canonical_version, build.build)
    if not path.is_dir():
        return Problem("docs-missing", path, f"the row of {build.project} {build.version} names it")
    files = build_files(path)
    try:
        size = sum(file.stat().st_size for file in files)
    except FileNotFoundError:  # removed while checking: a replaced build (re-checked)
        return Problem("docs-missing", path, "files vanished while checking")
    if (len(files), size) != (build.files, build.size):
        return Problem(
            "docs-size",
            path,
            f"{len(files)} files, {size} bytes; the row says {build.files} files, "
            f"{build.size} bytes",
        )
    return None


def _newest_change(path: Path) -> float:
    """The newest mtime of a file or anything in a tree (0 when it vanished)."""
    try:
        newest = path.lstat().st_mtime
        for base, dirs, names in os.walk(path):
            for name in dirs + names:
                newest = max(newest, (Path(base) / name).lstat().st_mtime)
    except FileNotFoundError:
        return 0.0
    return newest


def _docs_strays(docs: DocsStore, expected: set[Path]) -> list[Path]:
    """Entries under docs/<project>/<version>/ that are no current build, and files where
    only directories belong. Empty directories are harmless and left alone."""
    found = []
    for project in _entries(docs.root):
        if project.name == INCOMING:
            continue
        if project.is_symlink() or not project.is_dir():
            found.append(project)
            continue
        for version in _entries(project):
            if version.is_symlink() or not version.is_dir():
                found.append(version)
                continue
            found.extend(build for build in _entries(version) if build not in expected)
    return found


def _entries(directory: Path) -> list[Path]:
    """A directory's entries, sorted; none when it is absent or gone (deleted meanwhile)."""
    try:
        return sorted(directory.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return []


def _settled(path: Path, now: float) -> bool:
    return now - _newest_change(path) > DOCS_GRACE_SECONDS


def _docs_debris(problem: Problem, data_dir: Path, quarantine: Path) -> list[Problem]:
    """The problem, after quarantining its path when repairing; none when the path went
    away meanwhile (the old build of a re-upload is removed right after its commit)."""
    if problem.repaired:
        try:
            _quarantine(data_dir, quarantine, problem.path)
        except FileNotFoundError:
            return []
    return [problem]


def stale_temps(tmp_dir: Path, data_dir: Path, quarantine: Path, repair: bool) -> list[Problem]:
    """Temp files of dead processes (uploads, imports) in `tmp_dir`, quarantined on repair;
    every store keeps its temp files in the data dir."""
    problems = []
    for path in _walk_files(tmp_dir):
        if is_stale(tmp_dir, path):
            if repair:
                _quarantine(data_dir, quarantine, path)
            problems.append(Problem("temp", path, "left by a dead process", repair))
    return problems


def _quarantine(data_dir: Path, target_dir: Path, path: Path) -> None:
    target = target_dir / path.relative_to(data_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(path, target)
    fsync_dir(path.parent)
    fsync_dir(target.parent)


def check_index(
    db: Database,
    storage: Storage,
    data_dir: Path,
    *,
    repair: bool = False,
    progress: Progress | None = None,
) -> CheckReport:
    """Compare rows with files; with repair, quarantine strays, stale temp files and
    damaged files."""
    progress = progress or Progress("check", None)
    report = CheckReport()
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    quarantine = data_dir / QUARANTINE / stamp
    docs = DocsStore.in_data_dir(data_dir)
    with db.write_lock():
        records = db.all_files()
        expected = {path for record in records for path in file_paths(storage, record)}
        for path in _walk_files(storage.packages_dir):
            if path not in expected:
                if repair:
                    _quarantine(data_dir, quarantine, path)
                report.problems.append(Problem("stray", path, "no row refers to it", repair))
        builds = db.all_docs_builds()
        current = {docs.build_dir(b.project, b.canonical_version, b.build) for b in builds}
        now = time.time()
        for path in _docs_strays(docs, current):
            if _settled(path, now):
                problem = Problem("docs-stray", path, "no docs row names it", repair)
                report.problems += _docs_debris(problem, data_dir, quarantine)
    report.problems += stale_temps(storage.tmp_dir, data_dir, quarantine, repair)
    for path in _entries(docs.root / INCOMING):
        if _settled(path, time.time()):
            problem = Problem("docs-incoming", path, "left by a dead upload", repair)
            report.problems += _docs_debris(problem, data_dir, quarantine)
    # Hashing reads every byte: done outside the lock (published files never change).
    progress.start(
        len(records) + sum(b.files for b in builds),
        sum(r.size for r in records) + sum(b.size for b in builds),
    )
    for record in records:
        problems = _check_record(storage, record)
        progress.advance(1, record.size)
        if problems and db.get_file(record.filename) is None:
            continue  # deleted since the scan: not damage
        if repair:
            problems = _quarantine_damage(db, data_dir, quarantine, record, problems)
        report.problems.extend(problems)
        report.files += 1
        report.bytes += record.size
    for build in builds:
        damage = _check_docs_build(docs, build)
        progress.advance(build.files, build.size)
        if damage is not None and build not in db.all_docs_builds():
            continue  # replaced or deleted since the scan: not damage
        if damage is not None:
            report.problems.append(damage)
        report.docs += 1
    progress.finish()
    if repair and any(problem.repaired for problem in report.problems):
        report.quarantine = quarantine
    return report
