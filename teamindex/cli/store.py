"""`teamindex migrate-store`: move a data dir's metadata between SQLite and PostgreSQL."""

from __future__ import annotations

import argparse

from ..config import Settings
from ..db import Database
from ..db.engines import is_postgresql
from ..db.transfer import TransferError, copy_database
from .base import CommandError, command


def _migrate_store_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--reverse",
        action="store_true",
        help="copy from the PostgreSQL database back into a fresh SQLite file in the data dir",
    )


def copy_files(settings: Settings, *, reverse: bool) -> None:
    """The hook for the files: with local storage they stay where they are (the data dir
    is the same before and after). A storage backend other than the data dir copies and
    verifies its objects here, before the metadata moves."""
    del settings, reverse


@command(_migrate_store_args)
def cmd_migrate_store(args: argparse.Namespace, settings: Settings) -> int:
    """Copy the SQLite database of --data-dir into the empty PostgreSQL database of
    --database-url (or back with --reverse), in one transaction, then verify each table's
    rows and digest. Ids and serials are kept. Stop the server first; a target that holds
    data is refused. Afterwards start the server with the new --database-url (or without)."""
    url = settings.database_url
    if not is_postgresql(url):
        raise CommandError("migrate-store needs --database-url postgresql://... (the other side)")
    sqlite_file = settings.db_path
    if not args.reverse and not sqlite_file.is_file():
        raise CommandError(f"no SQLite database at {sqlite_file} to copy")
    if args.reverse and sqlite_file.exists() and sqlite_file.stat().st_size > 0:
        raise CommandError(f"{sqlite_file} exists: --reverse copies into a fresh file only")
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    local, remote = Database(sqlite_file), Database(url)
    try:
        local.migrate()
        remote.migrate()
        source, target = (remote, local) if args.reverse else (local, remote)
        copy_files(settings, reverse=args.reverse)
        reports = copy_database(
            source, target, progress=lambda table, rows: print(f"  {table}: {rows} rows")
        )
    except TransferError as exc:
        raise CommandError(str(exc)) from None
    finally:
        local.close()
        remote.close()
    rows = sum(report.rows for report in reports)
    where = sqlite_file if args.reverse else "the PostgreSQL database"
    print(f"copied and verified {len(reports)} tables, {rows} rows, into {where}")
    return 0
