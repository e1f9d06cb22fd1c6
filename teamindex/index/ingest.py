"""Adding a distribution to the index: validate, store, record. Used by upload and import.

Order of operations (files before rows): the bytes are already in an fsynced temp file in
the data dir; the archive is validated; then, holding SQLite's write lock (BEGIN IMMEDIATE),
the duplicate rules are checked, the file and its .metadata are renamed into place, and the
rows are inserted. If anything fails after the rename, the renamed files are removed before
the lock is released, so the index never shows a row without its file; a crash in between
leaves at most an unreferenced file, which `teamindex check` finds.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Protocol

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from ..clock import utc_now
from ..db import Conflict, Database
from ..models import FileRecord, NewFile
from .dists import (
    DistributionError,
    FilenameInfo,
    Inspection,
    inspect_distribution,
    normalized_filename,
    parse_filename,
    spelling_pattern,
)
from .storage import METADATA_SUFFIX, Digests, Store

DIGEST_NAMES = ("md5", "sha256", "blake2_256")


class IngestError(Exception):
    """The file is refused; `status` is the HTTP status an upload answers with."""

    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class FileExists(IngestError):
    pass


class InsufficientStorage(IngestError):
    status = 507


class Outcome(Enum):
    STORED = "stored"
    UNCHANGED = "unchanged"  # identical bytes were already there: a successful no-op
    # Identical bytes whose file (or .metadata) was missing from disk, e.g. quarantined by
    # `check --repair` as damaged: the row said what they must be, and they are back.
    RESTORED = "restored"


@dataclass(frozen=True)
class Claims:
    """What the client said about the file; every claim given must match the file."""

    name: str | None = None
    version: str | None = None
    filetype: str | None = None
    digests: tuple[tuple[str, str], ...] = ()


def check_claims(info: FilenameInfo, digests: Digests, claims: Claims) -> None:
    """Compare the client's form fields with the file and its name."""
    if claims.name is not None and canonicalize_name(claims.name) != info.project:
        raise IngestError(f"Name {claims.name!r} does not match the filename {info.filename!r}.")
    if claims.version is not None:
        try:
            same = Version(claims.version) == info.version
        except (InvalidVersion, ValueError):  # ValueError: a version too long for int()
            raise IngestError(f"Invalid version {claims.version[:100]!r}.") from None
        if not same:
            raise IngestError(
                f"Version {claims.version!r} does not match the filename {info.filename!r}."
            )
    if claims.filetype is not None and claims.filetype != info.packagetype:
        raise IngestError(
            f"Invalid file extension: Extension of {info.filename!r} is invalid for "
            f"filetype {claims.filetype}."
        )
    actual = {"md5": digests.md5, "sha256": digests.sha256, "blake2_256": digests.blake2_256}
    for name, claimed in claims.digests:
        if claimed.strip().lower() != actual[name]:
            raise IngestError(
                "The digest supplied does not match a digest calculated from the uploaded file."
            )


def validate(
    temp: Path, digests: Digests, info: FilenameInfo, claims: Claims, content: bytes | None = None
) -> Inspection:
    """The checks that need only the file and the form (IngestError): the claims, then the
    archive and its metadata (from `content`, the file's bytes, when they are in memory)."""
    check_claims(info, digests, claims)
    try:
        return inspect_distribution(temp, info, content)
    except DistributionError as exc:
        raise IngestError(str(exc)) from None


def ingest(
    db: Database,
    storage: Store,
    temp: Path,
    digests: Digests,
    info: FilenameInfo,
    *,
    uploader_id: int | None,
    claims: Claims = Claims(),
    upload_time: str | None = None,
) -> Outcome:
    """Validate the temp file and add it to the index. The temp file is consumed (moved or
    deleted) in every case. `upload_time` (default now) lets an import keep the original."""
    meta_temp: Path | None = None
    try:
        meta_temp, new = prepare(
            storage,
            temp,
            digests,
            info,
            uploader_id=uploader_id,
            claims=claims,
            upload_time=upload_time,
        )
        return _record(db, storage, temp, meta_temp, new)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise InsufficientStorage("Insufficient storage: the index's disk is full.") from exc
        raise
    finally:
        _unlink_leftovers(temp, meta_temp, storage=storage)


def prepare(
    storage: Store,
    temp: Path,
    digests: Digests,
    info: FilenameInfo,
    *,
    uploader_id: int | None,
    claims: Claims = Claims(),
    upload_time: str | None = None,
    sync: bool = True,
    content: bytes | None = None,
) -> tuple[Path | None, NewFile]:
    """Everything before the write lock: validate the fsynced temp file, write its .metadata
    to an fsynced temp file, and say what its rows will hold. Safe on several threads.
    `sync=False`: neither temp file is fsynced yet; the caller makes its batch durable
    (Storage.make_durable) before ingest_batch renames them. `content`: the temp file's
    bytes, when the caller holds them (validate reads them instead of the file)."""
    inspection = validate(temp, digests, info, claims, content)
    metadata_sha256 = None
    meta_temp = None
    if inspection.metadata_bytes is not None:
        metadata_sha256 = hashlib.sha256(inspection.metadata_bytes).hexdigest()
        meta_temp = storage.write_temp(inspection.metadata_bytes, sync=sync)
    # Object stores: the uploads happen here, outside the write lock (base.Store.stage).
    try:
        storage.stage(temp, digests.sha256)
        if meta_temp is not None and metadata_sha256 is not None:
            storage.stage(meta_temp, metadata_sha256)
    except BaseException:
        _unlink_leftovers(meta_temp, storage=storage)  # the caller drops `temp`'s
        raise
    meta = inspection.metadata
    new = NewFile(
        project=info.project,
        display_name=meta.name,
        version=meta.version,
        canonical_version=info.canonical_version,
        summary=meta.summary,
        metadata_json=json.dumps(meta.fields, sort_keys=True),
        filename=info.filename,
        packagetype=info.packagetype,
        python_version=info.python_version,
        requires_python=meta.requires_python,
        size=digests.size,
        sha256=digests.sha256,
        blake2_256=digests.blake2_256,
        md5=digests.md5,
        metadata_sha256=metadata_sha256,
        upload_time=upload_time or utc_now(),
        uploader_id=uploader_id,
    )
    return meta_temp, new


@dataclass(frozen=True)
class Prepared:
    """A file prepare() accepted, waiting for ingest_batch."""

    temp: Path
    meta_temp: Path | None
    new: NewFile


def ingest_batch(
    db: Database, storage: Store, batch: list[Prepared]
) -> list[Outcome | IngestError]:
    """Add prepared files in one transaction (an import's speed: issue 14), each with the
    rules ingest() applies; a refused file is that file's IngestError and leaves the others.

    Files before rows, batched: every temp file is already durable; the renames happen under
    the write lock, then every directory touched is made durable (one syncfs on Linux, an
    fsync each elsewhere), then the one COMMIT lists them. A crash before the COMMIT leaves
    files without rows, which a re-run imports (the rename replaces them) and `check`
    reports meanwhile; never a row without its file.
    Temp files are consumed in every case.

    The duplicate rules read what they need for a whole group of files in a few statements
    (_BatchFacts; the write lock keeps it true), and the group's rows are written together
    (insert_files): ~13 statements per file held an import under 500 files/s. A group holds
    no two files with the same bytes or the same normalized name, so each file's checks
    see exactly what they would see one file at a time."""
    results: list[Outcome | IngestError] = []
    published: list[Path] = []
    try:
        with db.transaction():
            for group in _independent_groups(batch):
                facts = _BatchFacts(db, [item.new for item in group])
                stored: list[NewFile] = []
                for item in group:
                    mine: list[Path] = []
                    try:
                        results.append(
                            _place(
                                facts, storage, item.temp, item.meta_temp, item.new, mine,
                                False, stored.append,
                            )
                        )  # fmt: skip
                    except IngestError as refused:
                        results.append(refused)
                    published.extend(mine)
                db.insert_files(stored)
            storage.sync_published(
                storage.file_path(item.new.project, item.new.filename)
                for item, outcome in zip(batch, results, strict=True)
                if outcome in (Outcome.STORED, Outcome.RESTORED)
            )
        return results
    except BaseException:
        if published:
            # No COMMIT, so no rows: the batch's files go too (as _record does for one).
            with db.transaction():
                _discard(storage, [p for p in published if not _listed(db, storage, p)])
        raise
    finally:
        for item in batch:
            _unlink_leftovers(item.temp, item.meta_temp, storage=storage)


def _independent_groups(batch: list[Prepared]) -> list[list[Prepared]]:
    """The batch in order, cut wherever a file has the bytes or the normalized name of an
    earlier file of the same group (rare: one import holding two spellings of a file)."""
    groups: list[list[Prepared]] = [[]]
    seen: set[str | None] = set()
    for item in batch:
        marks = {"sha256:" + item.new.sha256, "name:" + str(_key(item.new.filename))}
        if marks & seen:
            groups.append([])
            seen = set()
        groups[-1].append(item)
        seen |= marks
    return [group for group in groups if group]


class Facts(Protocol):
    """What the duplicate rules read: the Database, or _BatchFacts for a group of files."""

    def get_file(self, filename: str) -> FileRecord | None: ...
    def filename_by_sha256(self, sha256: str) -> str | None: ...
    def deleted_file_sha256(self, filename: str) -> str | None: ...
    def release_filenames(self, project: str, canonical_version: str) -> list[tuple[str, str]]: ...
    def deleted_filenames_like(self, pattern: str) -> list[tuple[str, str]]: ...


class _BatchFacts:
    """The Database's answers to the duplicate rules for a group of new files, read in a
    few statements: by filename and sha256 up front, per project on first use. Valid only
    under the write lock taken for the group, before its rows are written."""

    def __init__(self, db: Database, news: list[NewFile]) -> None:
        self._db = db
        names = [new.filename for new in news]
        self._files = db.files_named(names)
        self._by_sha256 = db.filenames_by_sha256([new.sha256 for new in news])
        self._deleted = db.deleted_sha256s(names)
        self._wanted = set(names)
        self._releases: dict[str, dict[str, list[tuple[str, str]]]] = {}
        self._deleted_like: dict[str, list[tuple[str, str]]] = {}

    def get_file(self, filename: str) -> FileRecord | None:
        if filename in self._wanted:
            return self._files.get(filename)
        return self._db.get_file(filename)  # another spelling's row: rare

    def filename_by_sha256(self, sha256: str) -> str | None:
        return self._by_sha256.get(sha256)

    def deleted_file_sha256(self, filename: str) -> str | None:
        return self._deleted.get(filename)

    def release_filenames(self, project: str, canonical_version: str) -> list[tuple[str, str]]:
        if project not in self._releases:
            self._releases[project] = self._db.project_release_filenames(project)
        return self._releases[project].get(canonical_version, [])

    def deleted_filenames_like(self, pattern: str) -> list[tuple[str, str]]:
        if pattern not in self._deleted_like:
            self._deleted_like[pattern] = self._db.deleted_filenames_like(pattern)
        return self._deleted_like[pattern]


def _listed(db: Database, storage: Store, path: Path) -> bool:
    """Whether a published path belongs to a row (another writer may have recorded it)."""
    return db.get_file(path.name.removesuffix(METADATA_SUFFIX)) is not None


def _unlink_leftovers(*paths: Path | None, storage: Store | None = None) -> None:
    for leftover in paths:
        if leftover is not None:
            if storage is not None:
                storage.unstage(leftover)  # staged but not published: a duplicate, a refusal
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()


def _record(
    db: Database, storage: Store, temp: Path, meta_temp: Path | None, new: NewFile
) -> Outcome:
    published: list[Path] = []
    try:
        return _record_locked(db, storage, temp, meta_temp, new, published)
    except BaseException:
        if published:
            # The COMMIT itself failed (e.g. SQLITE_FULL): no row, so no files either,
            # unless an identical upload recorded them in the meantime.
            with db.transaction():
                if db.get_file(new.filename) is None:
                    _discard(storage, published)
        raise


def _record_locked(
    db: Database,
    storage: Store,
    temp: Path,
    meta_temp: Path | None,
    new: NewFile,
    published: list[Path],
) -> Outcome:
    with db.transaction():
        return _place(db, storage, temp, meta_temp, new, published, True, db.insert_file)


def _place(
    db: Facts,
    storage: Store,
    temp: Path,
    meta_temp: Path | None,
    new: NewFile,
    published: list[Path],
    sync: bool,
    insert: Callable[[NewFile], None],
) -> Outcome:
    """The duplicate rules, the renames and the rows, inside the caller's transaction;
    `sync=False` leaves the directory fsyncs to the caller (ingest_batch), and `insert`
    records the row (ingest_batch collects them and writes the group's rows at once)."""
    final = storage.file_path(new.project, new.filename)
    meta_final = storage.metadata_path(new.project, new.filename)
    existing = db.get_file(new.filename) or _other_spelling(db, new)
    if existing is not None:
        final = storage.file_path(existing.project, existing.filename)
        meta_final = storage.metadata_path(existing.project, existing.filename)
        if existing.sha256 == new.sha256:
            # twine retries and CI re-runs must succeed. If the file or its .metadata
            # went missing from disk (`check --repair` quarantines damaged ones), the
            # identical bytes just received put them back; other bytes never do (the
            # sha256 is the row's). A damaged file still in place is left to check.
            outcome = Outcome.UNCHANGED
            if not storage.exists(final):
                storage.publish(temp, final, sync=sync, sha256=new.sha256)
                outcome = Outcome.RESTORED
            if (
                meta_temp is not None
                and existing.metadata_sha256 is not None
                and existing.metadata_sha256 == new.metadata_sha256
                and not storage.exists(meta_final)
            ):
                storage.publish(meta_temp, meta_final, sync=sync, sha256=new.metadata_sha256)
                outcome = Outcome.RESTORED
            return outcome
        raise FileExists(
            f"File already exists ({existing.filename!r}, with sha256 hash "
            f"{existing.sha256!r}). A filename can only ever hold one content; "
            "upload a new version."
        )
    same_bytes = db.filename_by_sha256(new.sha256)
    if same_bytes is not None:
        raise FileExists(f"File already exists: these bytes were uploaded as {same_bytes!r}.")
    deleted = db.deleted_file_sha256(new.filename) or _deleted_spelling(db, new)
    if deleted is not None and deleted != new.sha256:
        raise IngestError(
            "This filename was previously used by a file that has since been deleted. "
            "Use a different version."
        )
    try:
        # Listed before the rename: a rename whose fsync failed must be undone too.
        published.append(final)
        storage.publish(temp, final, sync=sync, sha256=new.sha256)
        if meta_temp is not None:
            published.append(meta_final)
            storage.publish(meta_temp, meta_final, sync=sync, sha256=new.metadata_sha256)
        insert(new)
    except BaseException as exc:
        # Still under the write lock, so no other upload is using these paths.
        _discard(storage, published)
        published.clear()
        if isinstance(exc, Conflict):
            raise FileExists(f"File already exists: {exc}.") from None
        raise
    return Outcome.STORED


def _other_spelling(db: Facts, new: NewFile) -> FileRecord | None:
    """The stored file that is this one under another spelling (`Django-3.2.25-…whl` for
    `django-3.2.25-…whl`): installers see one candidate in both, so the index keeps one
    file per normalized filename, as the first upload spelled it."""
    key = _key(new.filename)
    for filename, _sha256 in db.release_filenames(new.project, new.canonical_version):
        if filename != new.filename and _key(filename) == key:
            return db.get_file(filename)
    return None


def _deleted_spelling(db: Facts, new: NewFile) -> str | None:
    """The sha256 of a deleted file that was this one under another spelling: a deleted
    filename never comes back with other bytes, whatever its spelling."""
    key = _key(new.filename)
    for filename, sha256 in db.deleted_filenames_like(spelling_pattern(new.project)):
        if _key(filename) == key:
            return sha256
    return None


# A batch asks for each new file's key 3-4 times (groups, spellings, deleted spellings):
# parsing the filename again each time was ~12% of an import's time (issue 14).
@functools.lru_cache(maxsize=4096)
def _key(filename: str) -> str | None:
    """normalized_filename() of a stored name; None for one that no longer parses."""
    try:
        return normalized_filename(parse_filename(filename))
    except DistributionError:
        return None


def _discard(storage: Store, paths: list[Path]) -> None:
    """Unlink the files of a failed ingest. The directory fsync is best effort (the disk may
    be full); should a crash undo the unlink, `teamindex check` reports the stray."""
    with contextlib.suppress(OSError):
        storage.remove(*paths)
