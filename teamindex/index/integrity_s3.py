"""`teamindex check` for S3 storage: do the rows and the bucket's objects agree?

Checked: every file row has its object with the recorded size and sha256 (the sha256 the
upload recorded in the object's metadata, checked against the bytes when it was stored;
check does not read every object back), and its .metadata object; no object under
packages/ lacks a row (an orphan: an upload killed between its PUT and its COMMIT, or a
delete cut short); every docs row has its build's objects with the recorded count and
bytes, and no other docs objects exist; no multipart upload was left open; tmp/ (on local
disk, as ever) holds nothing of dead processes.

--repair removes orphan objects, objects of docs builds no row names and abandoned
multipart uploads, but only those older than the grace period (default an hour): an
upload in flight has written its object and not yet committed its row, and is never
taken. Stale temp files are quarantined as on disk. Damaged or missing objects are only
reported: an upload of the same file restores a missing one (ingest).
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import cast

from ..db import Database
from ..models import FileRecord
from .docstore_s3 import DOCS, S3DocsStore
from .integrity import QUARANTINE, CheckReport, Problem, stale_temps
from .progress import Progress
from .removal import file_paths
from .storage.s3 import INCOMING, PACKAGES, SHA256_KEY, S3Storage, s3_errors

ORPHAN_GRACE_SECONDS = 3600.0


def check_bucket(
    db: Database,
    storage: S3Storage,
    docs: S3DocsStore,
    data_dir: Path,
    *,
    repair: bool = False,
    grace_seconds: float = ORPHAN_GRACE_SECONDS,
    progress: Progress | None = None,
) -> CheckReport:
    """Compare rows with objects; with repair, remove orphans older than the grace."""
    progress = progress or Progress("check", None)
    report = CheckReport()
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    quarantine = data_dir / QUARANTINE / stamp
    with db.write_lock():  # no upload commits while the rows and the listing are read
        records = db.all_files()
        builds = db.all_docs_builds()
        listed = list(storage.list_keys(storage.prefix))
    expected = {
        storage.key(path): record for record in records for path in file_paths(storage, record)
    }
    build_prefixes = {docs.key(b.project, b.canonical_version, b.build, ""): b for b in builds}
    found: dict[str, tuple[int, float]] = {}
    docs_found: dict[str, list[int]] = {start: [] for start in build_prefixes}
    packages, docs_root = storage.prefix + PACKAGES, storage.prefix + DOCS
    incoming = storage.prefix + INCOMING
    for key, size, modified in listed:
        age = (datetime.now(timezone.utc) - modified.astimezone(timezone.utc)).total_seconds()
        if key.startswith(packages):
            found[key] = (size, age)
            if key not in expected:
                report.problems += _orphan(storage, key, age, repair, grace_seconds, "stray")
        elif key.startswith(incoming):  # staged by an upload that died before its row
            report.problems += _orphan(storage, key, age, repair, grace_seconds, "temp")
        elif key.startswith(docs_root):
            start = _build_prefix(key, docs_root)
            if start in docs_found:
                docs_found[start].append(size)
            else:
                report.problems += _orphan(storage, key, age, repair, grace_seconds, "docs-stray")
    report.problems += _open_uploads(storage, repair, grace_seconds)
    report.problems += stale_temps(storage.tmp_dir, data_dir, quarantine, repair)
    progress.start(len(records) + len(builds), sum(r.size for r in records))
    for record in records:
        problems = _check_record(storage, record)
        progress.advance(1, record.size)
        if problems and db.get_file(record.filename) is None:
            continue  # deleted since the listing: not damage
        report.problems += problems
        report.files += 1
        report.bytes += record.size
    for start, build in build_prefixes.items():
        sizes = docs_found[start]
        progress.advance(1, 0)
        path = cast(Path, PurePosixPath(start.removeprefix(storage.prefix)))
        if not sizes:
            detail = f"the row of {build.project} {build.version} names it"
            report.problems.append(Problem("docs-missing", path, detail))
        elif (len(sizes), sum(sizes)) != (build.files, build.size):
            detail = (
                f"{len(sizes)} files, {sum(sizes)} bytes; the row says {build.files} files, "
                f"{build.size} bytes"
            )
            report.problems.append(Problem("docs-size", path, detail))
        report.docs += 1
    progress.finish()
    if repair and any(p.repaired and p.kind == "temp" for p in report.problems):
        report.quarantine = quarantine
    return report


def _check_record(storage: S3Storage, record: FileRecord) -> list[Problem]:
    """The row's object and its .metadata: there, with the recorded size and sha256."""
    problems = []
    hint = f"upload {record.filename} again (the same file) to restore it"
    wanted = [(storage.file_path(record.project, record.filename), record.size, record.sha256)]
    if record.metadata_sha256 is not None:
        meta = storage.metadata_path(record.project, record.filename)
        wanted.append((meta, None, record.metadata_sha256))
    for path, size, sha256 in wanted:
        metadata = path.name.endswith(".metadata")
        try:
            head = storage.head(storage.key(path))
        except FileNotFoundError:
            kind = "metadata-missing" if metadata else "missing"
            problems.append(Problem(kind, path, f"no object for the row; {hint}"))
            continue
        if size is not None and head["ContentLength"] != size:
            detail = f"{head['ContentLength']} bytes, the row says {size}"
            problems.append(Problem("size", path, detail))
        elif head.get("Metadata", {}).get(SHA256_KEY) != sha256:
            kind = "metadata-sha256" if metadata else "sha256"
            problems.append(Problem(kind, path, "its recorded sha256 differs from the row"))
    return problems


def _orphan(
    storage: S3Storage, key: str, age: float, repair: bool, grace: float, kind: str
) -> list[Problem]:
    """An object no row names; removed on repair once older than the grace period."""
    path = cast(Path, PurePosixPath(key.removeprefix(storage.prefix)))
    if age < grace:
        detail = f"no row refers to it (written {age:.0f} s ago: may be an upload in flight)"
        return [Problem(kind, path, detail)]
    if repair:
        storage.delete_key(key)
    return [Problem(kind, path, "no row refers to it", repair)]


def _open_uploads(storage: S3Storage, repair: bool, grace: float) -> list[Problem]:
    """Multipart uploads begun by a process that died before completing or aborting them."""
    problems = []
    with s3_errors("the listing of multipart uploads"):
        listing = storage.client.list_multipart_uploads(
            Bucket=storage.bucket, Prefix=storage.prefix
        )
    for upload in listing.get("Uploads", []):
        started = upload["Initiated"].astimezone(timezone.utc)
        age = (datetime.now(timezone.utc) - started).total_seconds()
        if age < grace:
            continue
        path = cast(Path, PurePosixPath(upload["Key"].removeprefix(storage.prefix)))
        if repair:
            with s3_errors(f"the abort of {upload['Key']!r}"):
                storage.client.abort_multipart_upload(
                    Bucket=storage.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                )
        problems.append(Problem("upload", path, "a multipart upload left open", repair))
    return problems


def _build_prefix(key: str, docs_root: str) -> str:
    """`<docs>/<project>/<version>/<build>/` of a docs object key ("" if too short)."""
    parts = key.removeprefix(docs_root).split("/")
    return docs_root + "/".join(parts[:3]) + "/" if len(parts) > 3 else ""
