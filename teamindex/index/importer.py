"""Bulk import of distribution files from directories, through the same checks as uploads."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from ..db import Database
from .dists import DistributionError, parse_filename
from .ingest import IngestError, Outcome, ingest
from .storage import Storage

DIST_SUFFIXES = (".whl", ".tar.gz", ".zip")


@dataclass
class ImportReport:
    imported: int = 0
    skipped: int = 0
    rejected: list[tuple[Path, str]] = field(default_factory=list)


def find_distributions(paths: Iterable[Path]) -> Iterator[Path]:
    """Files with a distribution suffix under the given paths, in a stable order."""
    for path in paths:
        if path.is_dir():
            yield from sorted(
                p for p in path.rglob("*") if p.is_file() and p.name.endswith(DIST_SUFFIXES)
            )
        elif path.is_file():
            yield path


def import_paths(
    db: Database,
    storage: Storage,
    paths: Iterable[Path],
    *,
    owner_id: int | None = None,
    progress: TextIO | None = None,
) -> ImportReport:
    """Import every distribution under *paths*; never stops on a bad file. `owner_id`
    becomes the owner of projects the import creates (as a first uploader would)."""
    report = ImportReport()
    found = list(find_distributions(paths))
    started = time.monotonic()
    for number, path in enumerate(found, 1):
        try:
            info = parse_filename(path.name)
            temp = storage.new_temp()
            try:
                with path.open("rb") as source:
                    shutil.copyfileobj(source, temp, 1 << 20)  # type: ignore[misc]
                temp.finish()
            except BaseException:
                temp.discard()
                raise
            temp.close()
            outcome = ingest(db, storage, temp.path, temp.digests(), info, uploader_id=owner_id)
        except (DistributionError, IngestError) as exc:
            report.rejected.append((path, getattr(exc, "message", str(exc))))
        else:
            if outcome is Outcome.STORED:
                report.imported += 1
            else:
                report.skipped += 1
        if progress is not None and (number % 50 == 0 or number == len(found)):
            rate = number / max(time.monotonic() - started, 1e-6)
            progress.write(f"\r{number}/{len(found)} files ({rate:.0f}/s)")
            if number == len(found):
                progress.write("\n")
            progress.flush()
    return report
