"""Bulk import of distribution files from directories, through the same checks as uploads.

Every file found is accounted for: imported, identical (already there), rejected (it is
named like a distribution but the checks refuse it) or skipped (not a format the index
serves: eggs, .tar.bz2 sdists, Windows installers, anything else), each with its reason.
A migration that silently loses files is found out only when an install fails.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import select
import shutil
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TextIO

from ..clock import utc_stamp
from ..db import Database
from .dists import DistributionError, parse_filename
from .inflight import TempOwner
from .ingest import IngestError, Outcome, Prepared, ingest_batch, prepare
from .progress import Progress
from .storage import Storage, Store

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
# Files up to this size are read whole and checked in memory: no reopening the temp file,
# no seeking in it (a 100 KB wheel's import made ~5 opens and ~24 lseeks).
IN_MEMORY_BYTES = 8 << 20
# Copying, hashing (hashlib releases the GIL), fsyncing and unzipping overlap on threads.
PREPARE_THREADS = min(8, 2 * (os.cpu_count() or 1))
# Preparing a file is mostly Python (zip directory, metadata parsing): on threads one GIL
# held an import of 100 KB wheels to one core, ~750 files/s on the 2-core VM (issue 14).
# Bigger imports to local disk prepare in worker processes, one per core, and this process
# records; below this many files a pool's start (~0.2 s) is not worth it.
PROCESS_POOL_AFTER = 2 * BATCH_FILES
PROCESS_WORKERS = os.cpu_count() or 1
PROCESS_CHUNK = 16  # files per task: one round trip to a worker costs ~0.1 ms here

Results = list[Prepared | str]


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

    Files are prepared on several threads, or worker processes for a big import
    (_preparer), and recorded BATCH_FILES at a time (one transaction each, ingest_batch);
    the next batch is prepared while one is recorded."""
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
    with _preparer(storage, len(wanted), owner_id, keep_times) as prepare_all:
        pending = prepare_all(batches[0]) if batches else []
        for number, batch in enumerate(batches):
            current = pending
            pending = prepare_all(batches[number + 1]) if number + 1 < len(batches) else []
            try:
                prepared = [item for future in current for item in future.result()]
                _record_batch(db, storage, batch, prepared, report)
            except BaseException:
                # Their temp files must not outlive the import: unstarted work is dropped,
                # the rest is awaited and removed (a worker process may still write one).
                for future in current + pending:
                    future.cancel()
                for future in current + pending:
                    _discard_prepared(future)
                raise
            meter.advance(len(batch), sum(sizes[path] for path in batch))
    meter.finish()
    return report


@contextlib.contextmanager
def _preparer(
    storage: Store, files: int, owner_id: int | None, keep_times: bool
) -> Iterator[Callable[[list[Path]], list[Future[Results]]]]:
    """A function that starts preparing a batch: futures of the prepared files in order.
    Threads, or worker processes when the import is big and the store is the local disk
    (an object store's stage() uploads with a client that is this process's). As with any
    multiprocessing, a script that calls import_paths needs `if __name__ == "__main__":`."""
    if isinstance(storage, Storage) and files >= PROCESS_POOL_AFTER and PROCESS_WORKERS > 1:
        context = multiprocessing.get_context("forkserver")
        # The workers fork from a server that has imported the import code once.
        context.set_forkserver_preload([__name__])
        with ProcessPoolExecutor(
            PROCESS_WORKERS,
            mp_context=context,
            initializer=_start_worker,
            initargs=(storage.packages_dir, storage.tmp_dir, storage.owner.token, os.getpid()),
        ) as processes:
            yield lambda batch: [
                processes.submit(
                    _prepare_in_worker, batch[i : i + PROCESS_CHUNK], owner_id, keep_times
                )
                for i in range(0, len(batch), PROCESS_CHUNK)
            ]
        return
    with ThreadPoolExecutor(PREPARE_THREADS, thread_name_prefix="import") as threads:
        yield lambda batch: [
            threads.submit(_prepare_list, storage, [path], owner_id, keep_times) for path in batch
        ]


# A worker process's store: the data dir's, with temp files named after the importing
# process, whose owner lock says they are work in flight (set by _start_worker).
_worker_storage: Storage | None = None


def _start_worker(packages_dir: Path, tmp_dir: Path, owner_token: str, importer: int) -> None:
    global _worker_storage
    # Ctrl-C reaches the whole process group: the importing process handles it and
    # removes what its workers prepared.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _exit_with(importer)
    _worker_storage = Storage(packages_dir, tmp_dir)
    _worker_storage.owner = TempOwner(tmp_dir, owner_token)


WATCH_SECONDS = 1.0  # without pidfd_open: how often a worker looks for its importer


def _exit_with(pid: int) -> None:
    """End this worker as soon as process `pid` (the import) is gone, even by kill -9: a
    pool's worker holds both ends of its own queues and would wait for work forever, and
    the fork server stays while any worker does. What it was writing is a temp file named
    after the dead import's owner lock: debris that `check --repair` and the next server
    start remove."""
    if hasattr(os, "pidfd_open"):  # Linux: woken by the kernel when `pid` exits
        try:
            handle = os.pidfd_open(pid)
        except ProcessLookupError:
            os._exit(1)

        def watch() -> None:
            select.select([handle], [], [])
            os._exit(1)

    else:

        def watch() -> None:
            while True:
                time.sleep(WATCH_SECONDS)
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    os._exit(1)

    threading.Thread(target=watch, name="import-watch", daemon=True).start()


def _prepare_in_worker(paths: list[Path], owner_id: int | None, keep_times: bool) -> Results:
    if _worker_storage is None:
        raise RuntimeError("import worker started without its store")
    return _prepare_list(_worker_storage, paths, owner_id, keep_times)


def _prepare_list(
    storage: Store, paths: list[Path], owner_id: int | None, keep_times: bool
) -> Results:
    """Prepare files in order; if one fails (a full disk), the ones already prepared are
    removed before the error goes up."""
    results: Results = []
    try:
        for path in paths:
            results.append(_prepare_one(storage, path, owner_id=owner_id, keep_times=keep_times))
    except BaseException:
        _discard_items(results)
        raise
    return results


def _prepare_one(
    storage: Store, path: Path, *, owner_id: int | None, keep_times: bool
) -> Prepared | str:
    """Copy into a temp file while hashing, and validate (on a worker thread): the Prepared
    file (not yet fsynced), or why it is rejected."""
    try:
        info = parse_filename(path.name)
        upload_time = _mtime(path) if keep_times else None
        temp = storage.new_temp()
        content = None
        try:
            with path.open("rb") as source:
                size = _size(path)
                if size <= IN_MEMORY_BYTES:
                    content = source.read(size + 1)  # one read; more if it grows meanwhile
                    temp.write(content)
                shutil.copyfileobj(source, temp, 1 << 20)  # type: ignore[misc]
            if content is not None and temp.size != len(content):
                content = None  # it grew while read: validate what the temp file holds
            temp.finish(sync=False)  # the batch is made durable at once (_record_batch)
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
                sync=False,
                content=content,
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
    """Record a batch's prepared files in one transaction and account for each file. Their
    temp files were written without an fsync each: one syncfs (or an fsync each where
    there is none) makes them all durable before ingest_batch renames any of them."""
    accepted = [item for item in prepared if isinstance(item, Prepared)]
    temps = [path for item in accepted for path in (item.temp, item.meta_temp) if path]
    try:
        storage.make_durable(temps)
    except BaseException:
        for path in temps:  # ingest_batch would have consumed them
            path.unlink(missing_ok=True)
        raise
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


def _discard_prepared(future: Future[Results]) -> None:
    # exception(), not result(): a broken pool gives every future the same exception
    # object, whose traceback would grow with each raise.
    with contextlib.suppress(BaseException):
        if future.exception() is None:
            _discard_items(future.result())


def _discard_items(items: Results) -> None:
    for item in items:
        if isinstance(item, Prepared):
            for leftover in (item.temp, item.meta_temp):
                if leftover is not None:
                    leftover.unlink(missing_ok=True)


def _mtime(path: Path) -> str:
    return utc_stamp(datetime.fromtimestamp(path.stat().st_mtime, timezone.utc))
