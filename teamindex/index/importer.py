"""Bulk import of distribution files from directories, through the same checks as uploads."""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from ..db import Database
from .dists import DistributionError, parse_filename
from .ingest import IngestError, Outcome, ingest
from .progress import Progress
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


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:  # gone meanwhile: reading it reports why
        return 0


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
    meter = Progress("import", progress)
    sizes = {path: _size(path) for path in found}
    meter.start(len(found), sum(sizes.values()))
    for path in found:
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
        meter.advance(1, sizes[path])
    meter.finish()
    return report
