"""Bulk import of distribution files from directories, through the same checks as uploads.

Every file found is accounted for: imported, identical (already there), rejected (it is
named like a distribution but the checks refuse it) or skipped (not a format the index
serves: eggs, .tar.bz2 sdists, Windows installers, anything else), each with its reason.
A migration that silently loses files is found out only when an install fails.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections import Counter
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TextIO

from ..clock import utc_stamp
from ..db import Database
from .dists import DistributionError, parse_filename
from .ingest import IngestError, Outcome, Prepared, ingest_batch, prepare
from .progress import Progress
from .storage import Store

DIST_SUFFIXES = (".whl", ".tar.gz", ".zip")
# What pypiserver directories hold besides wheels and sdists, and why each is left out.
# PEP 527 removed these upload formats from PyPI; pip installs none of them from an index.
SKIP_REASONS = (
    (".egg", "egg", "egg: pip cannot install eggs from an index (PEP 527, PEP 715)"),
    (
        (".tar.bz2", ".tar.xz", ".tar.Z", ".tgz", ".tbz", ".tar"),
        "old sdist format",
        "sdist format not accepted since PEP 527 (only .tar.gz and .zip)",
    ),
    (
        (".exe", ".msi", ".rpm", ".dmg", ".deb"),
        "installer",
        "installer (bdist_wininst/msi/rpm), not installable by pip (PEP 527)",
    ),
    (".metadata", "metadata", "a wheel's metadata file; the index extracts its own"),
    ((".asc", ".sig", ".attestation"), "signature", "signature or attestation; not kept"),
)


@dataclass
class ImportReport:
    imported: int = 0
    identical: int = 0  # already in the index with these bytes: a successful no-op
    rejected: list[tuple[Path, str]] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    skipped_kinds: Counter[str] = field(default_factory=Counter)

    def summary(self) -> str:
        """One line: `imported 3, identical 1, skipped 2 (1 egg, 1 installer), rejected 0`."""
        kinds = ", ".join(f"{n} {kind}" for kind, n in sorted(self.skipped_kinds.items()))
        skipped = f"skipped {len(self.skipped)}" + (f" ({kinds})" if kinds else "")
        return (
            f"imported {self.imported}, identical {self.identical}, {skipped}, "
            f"rejected {len(self.rejected)}"
        )


def skip_reason(name: str) -> tuple[str, str] | None:
    """(kind, reason) for a file the import leaves out; None for a wheel or sdist name."""
    if name.endswith(DIST_SUFFIXES):
        return None
    for suffixes, kind, reason in SKIP_REASONS:
        if name.endswith(suffixes):
            return kind, reason
    return "other", "not a distribution (expected .whl, .tar.gz or .zip)"


def find_files(paths: Iterable[Path]) -> Iterator[Path]:
    """Every file under the given paths, in a stable order."""
    for path in paths:
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.is_file())
        elif path.is_file():
            yield path


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:  # gone meanwhile: reading it reports why
        return 0


# Files per transaction: one COMMIT and one fsync per directory for this many files
# (issue 14: per-file commits and fsyncs held an import to ~260 files/s).
BATCH_FILES = 256
# Copying, hashing (hashlib releases the GIL), fsyncing and unzipping overlap on threads.
PREPARE_THREADS = min(8, 2 * (os.cpu_count() or 1))


def import_paths(
    db: Database,
    storage: Store,
    paths: Iterable[Path],
    *,
    owner_id: int | None = None,
    progress: TextIO | None = None,
    keep_times: bool = False,
) -> ImportReport:
    """Import every distribution under *paths*; never stops on a bad file. `owner_id`
    becomes the owner of projects the import creates (as a first uploader would);
    `keep_times` takes each file's upload time from its mtime (a pypiserver directory's
    only record of when a release came out, which `uv --exclude-newer` relies on).

    Files are prepared on several threads and recorded BATCH_FILES at a time (one
    transaction each, ingest_batch); the next batch is prepared while one is recorded."""
    report = ImportReport()
    found = list(find_files(paths))
    meter = Progress("import", progress)
    sizes = {path: _size(path) for path in found}
    meter.start(len(found), sum(sizes.values()))
    wanted: list[Path] = []
    for path in found:
        skipped = skip_reason(path.name)
        if skipped is None:
            wanted.append(path)
            continue
        report.skipped.append((path, skipped[1]))
        report.skipped_kinds[skipped[0]] += 1
        meter.advance(1, sizes[path])
    batches = [wanted[i : i + BATCH_FILES] for i in range(0, len(wanted), BATCH_FILES)]

    def prepare_all(batch: list[Path]) -> list[Future[Prepared | str]]:
        return [
            pool.submit(_prepare_one, storage, path, owner_id=owner_id, keep_times=keep_times)
            for path in batch
        ]

    with ThreadPoolExecutor(PREPARE_THREADS, thread_name_prefix="import") as pool:
        pending = prepare_all(batches[0]) if batches else []
        for number, batch in enumerate(batches):
            current = pending
            pending = prepare_all(batches[number + 1]) if number + 1 < len(batches) else []
            try:
                _record_batch(db, storage, batch, [f.result() for f in current], report)
            except BaseException:
                for future in pending:  # their temp files must not outlive the import
                    _discard_prepared(future)
                raise
            meter.advance(len(batch), sum(sizes[path] for path in batch))
    meter.finish()
    return report


def _prepare_one(
    storage: Store, path: Path, *, owner_id: int | None, keep_times: bool
) -> Prepared | str:
    """Copy into an fsynced temp file while hashing, and validate (on a worker thread):
    the Prepared file, or why it is rejected."""
    try:
        info = parse_filename(path.name)
        upload_time = _mtime(path) if keep_times else None
        temp = storage.new_temp()
        try:
            with path.open("rb") as source:
                shutil.copyfileobj(source, temp, 1 << 20)  # type: ignore[misc]
            temp.finish()
        except BaseException:
            temp.discard()
            raise
        temp.close()
        try:
            meta_temp, new = prepare(
                storage,
                temp.path,
                temp.digests(),
                info,
                uploader_id=owner_id,
                upload_time=upload_time,
            )
        except BaseException:
            storage.unstage(temp.path)
            temp.path.unlink(missing_ok=True)
            raise
    except (DistributionError, IngestError) as exc:
        return getattr(exc, "message", str(exc))
    return Prepared(temp.path, meta_temp, new)


def _record_batch(
    db: Database,
    storage: Store,
    batch: list[Path],
    prepared: list[Prepared | str],
    report: ImportReport,
) -> None:
    """Record a batch's prepared files in one transaction and account for each file."""
    accepted = [item for item in prepared if isinstance(item, Prepared)]
    outcomes = iter(ingest_batch(db, storage, accepted))
    for path, item in zip(batch, prepared, strict=True):
        outcome: Outcome | IngestError | str = item if isinstance(item, str) else next(outcomes)
        if isinstance(outcome, IngestError):
            outcome = outcome.message
        if isinstance(outcome, str):
            report.rejected.append((path, outcome))
        elif outcome is Outcome.STORED:
            report.imported += 1
        else:
            report.identical += 1


def _discard_prepared(future: Future[Prepared | str]) -> None:
    with contextlib.suppress(BaseException):
        item = future.result()
        if isinstance(item, Prepared):
            for leftover in (item.temp, item.meta_temp):
                if leftover is not None:
                    leftover.unlink(missing_ok=True)


def _mtime(path: Path) -> str:
    return utc_stamp(datetime.fromtimestamp(path.stat().st_mtime, timezone.utc))
