"""`teamindex migrate-store`: move a data dir's metadata between SQLite and PostgreSQL."""

from __future__ import annotations

import argparse

from ..config import Settings, parse_storage
from ..db import Database
from ..db.engines import is_postgresql
from ..db.transfer import TableReport, TransferError, copy_database, refuse_non_empty
from ..index.storage import StorageError, StorageUnavailable
from ..index.storemigrate import StoreMigrateError, migrated_files
from .base import CommandError, command


def _migrate_store_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--reverse",
        action="store_true",
        help="copy from the PostgreSQL database back into a fresh SQLite file in the data dir",
    )
    parser.add_argument(
        "--storage",
        dest="storage",
        type=parse_storage,
        default=argparse.SUPPRESS,
        help="also copy the data dir's files and docs into this empty bucket, s3://bucket/prefix"
        " (back into the data dir with --reverse); endpoint and keys as for serve "
        "(AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ... or TEAMINDEX_S3_* settings)",
    )


def _files_then_rows(
    source: Database, target: Database, settings: Settings, *, reverse: bool
) -> list[TableReport]:
    """The rows' copy, preceded (with --storage) by the verified copy of every file and
    docs build they list: a row never lands ahead of its object. With local storage the
    files stay where they are (the data dir is the same before and after)."""

    def rows() -> list[TableReport]:
        return copy_database(
            source, target, progress=lambda table, rows: print(f"  {table}: {rows} rows")
        )

    if not settings.storage:
        return rows()
    refuse_non_empty(target)  # before any file moves
    with migrated_files(source, settings, reverse=reverse) as copied:
        print(
            f"  files: {copied.files} ({copied.bytes} bytes), {copied.metadata} .metadata,"
            f" docs: {copied.docs} builds ({copied.docs_files} files), verified"
        )
        return rows()


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
        reports = _files_then_rows(source, target, settings, reverse=args.reverse)
    except (TransferError, StoreMigrateError, StorageError, StorageUnavailable) as exc:
        raise CommandError(str(exc)) from None
    finally:
        local.close()
        remote.close()
    rows = sum(report.rows for report in reports)
    where = sqlite_file if args.reverse else "the PostgreSQL database"
    print(f"copied and verified {len(reports)} tables, {rows} rows, into {where}")
    return 0
