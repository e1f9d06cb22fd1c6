"""Operations commands: yank, unyank, delete, backup, restore, check, config.

They work on the data dir directly, safely next to a running server: SQLite serializes
writers and every change bumps the serial, so the server's cached pages follow at once.
Yank and delete are written to the audit log as done by `cli:<os user>`.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from dataclasses import fields, replace
from pathlib import Path
from typing import cast

from packaging.utils import canonicalize_name, canonicalize_version
from packaging.version import Version

from ..access.audit import AuditLog
from ..config import OPTIONS, Settings, parse_duration, parse_storage, redact_url
from ..db import Database
from ..index.backup import BackupError, CopyReport, backup, restore
from ..index.docsbackends import open_docs
from ..index.docstore import DocsStore
from ..index.integrity import CheckReport, check_index
from ..index.progress import Progress, format_bytes
from ..index.removal import delete_dists
from ..index.storage import Store, open_storage
from ..ops.front import DEFAULT_CACHE_SECONDS, FrontOptions, nginx_config
from ..ops.front import warnings as front_warnings
from ..ops.front_caddy import caddy_config
from .base import CommandError, command, open_database


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def _canonical_version(text: str) -> str:
    try:
        return canonicalize_version(Version(text))
    except ValueError:  # InvalidVersion, or a number too long for int()
        raise CommandError(f"invalid version {text!r}") from None


def _storage(settings: Settings) -> Store:
    return open_storage(settings)


def _docs(settings: Settings) -> DocsStore:
    return open_docs(settings.data_dir, _storage(settings))


# -- yank / unyank ------------------------------------------------------------------------------


def _release_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("project", help="project name")
    parser.add_argument("version", help="release version")


def _yank_args(parser: argparse.ArgumentParser) -> None:
    _release_args(parser)
    parser.add_argument("--reason", default="", help="shown to installers (PEP 592)")


def _set_yanked(args: argparse.Namespace, settings: Settings, *, yanked: bool) -> int:
    db = open_database(settings)
    project = canonicalize_name(args.project)
    reason = getattr(args, "reason", "")
    if not db.set_yanked(project, _canonical_version(args.version), yanked=yanked, reason=reason):
        raise CommandError(f"no release {args.version} of project {project!r}")
    action = "yank" if yanked else "unyank"
    AuditLog(db).record(action, user=_actor(), project=project, detail=f"{args.version} {reason}")
    print(f"{action}ed {project} {args.version}")
    return 0


@command(_yank_args)
def cmd_yank(args: argparse.Namespace, settings: Settings) -> int:
    """Yank a release (PEP 592): installers skip it unless pinned with ==; files stay."""
    return _set_yanked(args, settings, yanked=True)


@command(_release_args)
def cmd_unyank(args: argparse.Namespace, settings: Settings) -> int:
    """Undo a yank: the release is offered to installers again."""
    return _set_yanked(args, settings, yanked=False)


# -- delete ------------------------------------------------------------------------------------


def _delete_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("project", help="project name")
    parser.add_argument("version", nargs="?", help="only this release")
    parser.add_argument("filename", nargs="?", help="only this file of the release")
    parser.add_argument(
        "--yes", action="store_true", help="really delete (without it: list what would go)"
    )


@command(_delete_args)
def cmd_delete(args: argparse.Namespace, settings: Settings) -> int:
    """Delete a project, a release or one file, rows and files (admins; cannot be undone);
    a release that loses its last file loses its hosted docs too.

    Without --yes it only lists what would be deleted. A deleted filename can never be
    uploaded again with different bytes; prefer `yank` for releases people may pin."""
    db = open_database(settings)
    project = canonicalize_name(args.project)
    found = db.get_project(project)
    if found is None:
        raise CommandError(f"no project {project!r}")
    version = _canonical_version(args.version) if args.version else None
    files = [
        record
        for record in db.project_files(found)
        if (version is None or canonicalize_version(Version(record.version)) == version)
        and (args.filename is None or record.filename == args.filename)
    ]
    what = " ".join(part for part in (project, args.version, args.filename) if part)
    if version is not None and not files:
        raise CommandError(f"nothing to delete: no file matches {what}")
    if not args.yes:
        print(f"would delete {what}: {len(files)} file(s)")
        for record in files:
            print(f"  {record.filename}")
        print("run again with --yes to delete")
        return 1
    deleted = delete_dists(db, _storage(settings), _docs(settings), project, version, args.filename)
    AuditLog(db).record(
        "delete",
        user=_actor(),
        project=project,
        filename=args.filename or "",
        detail=f"{what}: {len(deleted)} file(s)",
    )
    print(f"deleted {what}: {len(deleted)} file(s)")
    return 0


# -- backup / restore -----------------------------------------------------------------------------


def _quiet_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--quiet", action="store_true", help="no progress (bar on a terminal, else every 10%%)"
    )


def _progress(label: str, args: argparse.Namespace) -> Progress:
    return Progress(label, None if args.quiet else sys.stderr)


def _dest_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dest", type=Path, help="an empty or new directory")
    parser.add_argument(
        "--copy", action="store_true", help="always copy files, never hard-link them"
    )
    _storage_arg(parser)
    _quiet_arg(parser)


@command(_dest_arg)
def cmd_backup(args: argparse.Namespace, settings: Settings) -> int:
    """Back up the data dir into DEST, safely while the server runs.

    A consistent SQLite snapshot (backup API) plus the package files and the current docs
    builds it lists, hard-linked when DEST is on the same filesystem (files never change
    once published), else copied and fsynced. Exit status 1 if a file or docs build
    vanished meanwhile (run it again)."""
    db = open_database(settings)
    progress = _progress("backup", args)
    try:
        report = backup(
            db,
            _storage(settings),
            _docs(settings),
            args.dest,
            link=not args.copy,
            progress=progress,
        )
    except BackupError as exc:
        raise CommandError(str(exc)) from None
    finally:
        progress.finish()
    print("\n".join(backup_summary(report, args.dest)))
    for path in report.missing:
        print(f"  missing (deleted during the backup?): {path}", file=sys.stderr)
    return 1 if report.missing else 0


def _how(linked: int, copied: int) -> str:
    if not linked:
        return "all copied"
    if not copied:
        return "all hard-linked"
    return f"{linked} hard-linked, {copied} copied"


def _metadata(report: CopyReport) -> str:
    return f", with their {report.metadata} .metadata files" if report.metadata else ""


def backup_summary(report: CopyReport, dest: Path) -> list[str]:
    """What `backup` did, in plain words: what was copied and what hard-linked (a hard link
    is the same bytes on the same disk, not a second copy)."""
    lines = [
        f"backed up to {dest}:",
        "  database: a consistent snapshot (teamindex.sqlite3)",
        f"  package files: {report.files} ({format_bytes(report.bytes)}), "
        f"{_how(report.linked, report.copied)}{_metadata(report)}",
        f"  docs: {report.docs} builds, {report.docs_files} files "
        f"({format_bytes(report.docs_bytes)}), {_how(report.docs_linked, report.docs_copied)}"
        if report.docs
        else "  docs: none",
    ]
    if report.linked or report.docs_linked:
        lines.append(
            "hard-linked files are the data dir's own bytes on the same disk: they survive "
            "a deletion, not a lost disk; copy the backup to another machine (or use --copy)"
        )
    return lines


def restore_summary(report: CopyReport, data_dir: Path) -> list[str]:
    """What `restore` did: everything is copied, and checked on the way."""
    return [
        f"restored into {data_dir}:",
        "  database: copied and migrated to the current schema",
        f"  package files: {report.files} ({format_bytes(report.bytes)}), copied, each "
        f"checked against its sha256{_metadata(report)}",
        f"  docs: {report.docs} builds, {report.docs_files} files "
        f"({format_bytes(report.docs_bytes)}), copied, file counts and sizes checked"
        if report.docs
        else "  docs: none",
    ]


def _source_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", type=Path, help="a directory made by `teamindex backup`")
    _storage_arg(parser)
    _quiet_arg(parser)


@command(_source_arg)
def cmd_restore(args: argparse.Namespace, settings: Settings) -> int:
    """Restore a backup made by `teamindex backup` into an empty --data-dir.

    Every file is copied and its sha256 checked against the database, every docs build its
    file count and size; the database is migrated to the current schema. Start the server
    on the restored dir afterwards."""
    progress = _progress("restore", args)
    try:
        storage = _storage(settings)
        report = restore(
            args.source,
            settings.data_dir,
            progress=progress,
            storage=storage,
            docs=open_docs(settings.data_dir, storage),
        )
    except BackupError as exc:
        raise CommandError(str(exc)) from None
    finally:
        progress.finish()
    Database(settings.database).migrate()
    print("\n".join(restore_summary(report, settings.data_dir)))
    if report.docs_absent:
        print(
            f"the backup has no docs/ (made by an older version): {len(report.docs_absent)} "
            "docs builds not restored; upload them again: " + ", ".join(report.docs_absent),
            file=sys.stderr,
        )
    return 0


# -- check ---------------------------------------------------------------------------------------


def _check_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--repair",
        action="store_true",
        help="move strays, stale temp files, docs debris and damaged files to "
        "data/quarantine/<time>/ (S3 storage: remove orphan objects)",
    )
    parser.add_argument(
        "--grace",
        type=parse_duration,
        default=None,
        help="S3 storage: orphan objects younger than this are reported, never removed "
        "(an upload in flight has its object before its row; default 1h)",
    )
    _storage_arg(parser)
    _quiet_arg(parser)


def _storage_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--storage",
        dest="storage",
        type=parse_storage,
        help="where the files live: local (the data dir) or s3://bucket/prefix "
        "(the endpoint and keys from the AWS_* or TEAMINDEX_S3_* variables)",
    )


@command(_check_args)
def cmd_check(args: argparse.Namespace, settings: Settings) -> int:
    """Check that the database, the package files and the docs agree; --repair
    quarantines debris and damaged files.

    Every file row must have its file with the recorded size and sha256 (and its .metadata
    file), and packages/ and tmp/ must hold nothing else. Every docs row must have its build
    directory with the recorded file count and size, and docs/ must hold no other builds
    and docs/.incoming no leftovers. --repair moves strays, temp files left by dead
    processes, docs debris, and package files or .metadata whose bytes do not match their
    row to data/quarantine/<time>/; the row stays, and an upload of the same file restores
    a damaged or missing one. Missing files and damaged docs are only reported. Safe while
    the server runs. Exit status 0 only if all is well."""
    db = open_database(settings)
    progress = _progress("check", args)
    storage = _storage(settings)
    try:
        if storage.local:
            report = check_index(
                db, storage, settings.data_dir, repair=args.repair, progress=progress
            )
        else:
            report = _check_bucket(args, settings, db, storage, progress)
    finally:
        progress.finish()
    for problem in report.problems:
        print(problem)
    if report.quarantine is not None:
        print(f"quarantined into {report.quarantine}")
    broken = sum(not problem.repaired for problem in report.problems)
    docs = f" and {report.docs} docs builds" if report.docs else ""
    print(
        f"checked {report.files} files ({report.bytes} bytes){docs}: "
        + ("ok" if report.ok else f"{broken} problem(s)")
    )
    return 0 if report.ok else 1


def _check_bucket(
    args: argparse.Namespace, settings: Settings, db: Database, storage: Store, progress: Progress
) -> CheckReport:
    from ..index.docstore_s3 import S3DocsStore
    from ..index.integrity_s3 import ORPHAN_GRACE_SECONDS, check_bucket
    from ..index.storage.s3 import S3Storage

    return check_bucket(
        db,
        cast(S3Storage, storage),
        cast(S3DocsStore, open_docs(settings.data_dir, storage)),
        settings.data_dir,
        repair=args.repair,
        grace_seconds=ORPHAN_GRACE_SECONDS if args.grace is None else args.grace,
        progress=progress,
    )


# -- config --------------------------------------------------------------------------------------


def _config_args(parser: argparse.ArgumentParser) -> None:
    for option in OPTIONS:
        if option.name not in {"data_dir", "database_url"}:  # every command has those
            parser.add_argument(option.flag, dest=option.name, type=option.parse, help=option.help)


@command(_config_args)
def cmd_config(args: argparse.Namespace, settings: Settings) -> int:
    """Print the effective settings and where each came from.

    Sources are a command-line flag, a TEAMINDEX_* environment variable, or the default.
    Takes the same flags as `serve`, to show what that command line would run with."""
    print("# every option is also a flag (--name-with-dashes) and a variable (TEAMINDEX_NAME)")
    for item in fields(settings):
        if item.name == "sources":
            continue
        value = getattr(settings, item.name)
        if isinstance(value, tuple):
            value = ",".join(value)
        if item.name in {"upstream", "database_url"}:
            value = redact_url(value)  # its password stays out of terminals and logs
        if item.name == "s3_secret_access_key" and value:
            value = "****"
        print(f"{item.name} = {value}  # {settings.sources.get(item.name, 'default')}")
    return 0


# -- nginx-config -----------------------------------------------------------------------------


def _front_args(parser: argparse.ArgumentParser, front: str) -> None:
    """The flags nginx-config and caddy-config share: serve's, and where `front` listens."""
    for option in OPTIONS:  # the serve settings the config must match (port, accel, limits)
        if option.name not in {"data_dir", "database_url"}:  # every command has those
            parser.add_argument(option.flag, dest=option.name, type=option.parse, help=option.help)
    parser.add_argument("--listen", default="", help=f"ADDR:PORT {front} listens on (80, or 443)")
    parser.add_argument("--server-name", default="_", help="server name (default: any)")
    parser.add_argument("--tls-cert", type=Path, help="certificate file (with --tls-key)")
    parser.add_argument("--tls-key", type=Path, help="private key file (with --tls-cert)")


def _front_options(args: argparse.Namespace) -> FrontOptions:
    if (args.tls_cert is None) != (args.tls_key is None):
        raise CommandError("--tls-cert and --tls-key go together")
    return FrontOptions(
        listen=args.listen,
        server_name=args.server_name,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
    )


def _nginx_config_args(parser: argparse.ArgumentParser) -> None:
    _front_args(parser, "nginx")
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=FrontOptions.cache_dir,
        help="where nginx keeps download decisions; holds credentials: tmpfs, not backed up",
    )
    parser.add_argument(
        "--cache-seconds",
        type=int,
        default=DEFAULT_CACHE_SECONDS,
        help="how long nginx keeps a yes for a credential, address and file; a revoked "
        "token or changed password keeps downloading for at most this long (0: ask always)",
    )


@command(_nginx_config_args)
def cmd_nginx_config(args: argparse.Namespace, settings: Settings) -> int:
    """Print the nginx configuration for this data dir and serve settings: TLS, uploads
    streamed through, files sent by nginx after teamindex's checks (X-Accel-Redirect), and
    repeat downloads answered by nginx from a decision it keeps for --cache-seconds.
    Include it inside nginx's http {} block (Debian: /etc/nginx/conf.d/teamindex.conf)."""
    if args.cache_seconds < 0:
        raise CommandError("--cache-seconds must be 0 or more")
    options = replace(
        _front_options(args), cache_dir=args.cache_dir, cache_seconds=args.cache_seconds
    )
    for warning in front_warnings(settings):
        print(f"teamindex: note: {warning}", file=sys.stderr)
    sys.stdout.write(nginx_config(settings, options))
    return 0


# -- caddy-config -----------------------------------------------------------------------------


@command(lambda parser: _front_args(parser, "Caddy"))
def cmd_caddy_config(args: argparse.Namespace, settings: Settings) -> int:
    """Print a Caddyfile site block for this data dir and serve settings (Caddy 2.5+): TLS,
    uploads streamed through, files sent by Caddy after teamindex's checks (X-Accel-Redirect
    matched by reverse_proxy's handle_response). Every download asks teamindex once; core
    Caddy keeps no decision. Import it from /etc/caddy/Caddyfile."""
    options = _front_options(args)
    try:
        text = caddy_config(settings, options)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    for warning in front_warnings(settings, "Caddy"):
        print(f"teamindex: note: {warning}", file=sys.stderr)
    sys.stdout.write(text)
    return 0
