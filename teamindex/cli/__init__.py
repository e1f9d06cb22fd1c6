"""The `teamindex` command line. Each command's docstring is its --help text."""

from __future__ import annotations

import argparse
import getpass
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import __version__
from ..access.auth import AuthError, hash_password, validate_password, validate_username
from ..clock import utc_now
from ..config import OPTIONS, Settings, load_settings
from ..db import Conflict
from ..index.storage import StorageError, StorageUnavailable, open_storage
from .base import COMMANDS, CommandError, command, open_database, record_cli_event

if TYPE_CHECKING:  # types only: `serve` imports these where it needs them (cold start)
    from ..boot import WSGIApp
    from ..context import Services
    from ..ops.counters import Metrics

log = logging.getLogger("teamindex")


def read_new_password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    elif sys.stdin.isatty():
        password = getpass.getpass("Password: ")
        if getpass.getpass("Repeat password: ") != password:
            raise CommandError("passwords do not match")
    else:
        raise CommandError("no terminal to ask for a password; use --password-stdin")
    try:
        return validate_password(password)
    except AuthError as exc:
        raise CommandError(str(exc)) from None


def _password_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="user name")
    parser.add_argument(
        "--password-stdin", action="store_true", help="read the password as one line from stdin"
    )


# How the admin ran this program, for hints that name a command: dev.py sets it to
# "python3 dev.py teamindex", where a bare `teamindex` is not on the PATH.
LAUNCHER_ENV = "TEAMINDEX_LAUNCHER"


def launcher() -> str:
    return os.environ.get(LAUNCHER_ENV, "").strip() or "teamindex"


def _adduser_args(parser: argparse.ArgumentParser) -> None:
    _password_args(parser)
    parser.add_argument("--admin", action="store_true", help="make the user an administrator")


def _name_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="user name")


def _serve_args(parser: argparse.ArgumentParser) -> None:
    for option in OPTIONS:
        if option.name in {"data_dir", "database_url"}:  # add_data_dir() adds them
            continue
        parser.add_argument(option.flag, dest=option.name, type=option.parse, help=option.help)


@command(_serve_args)
def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    """Run the index with waitress (migrates the database first)."""
    from ..boot import FORM_OVERHEAD
    from ..ops.workers import resolve_workers

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    workers = resolve_workers(settings.workers)
    if workers > 1:
        return _serve_workers(settings, workers)
    options = settings.waitress_options(FORM_OVERHEAD)
    _serve(settings, options, lambda server, svc: _log_serving(settings, server, svc))
    return 0


def _log_serving(settings: Settings, server: Any, svc: Services) -> None:
    host, port = server.socket.getsockname()[:2]
    log.info(
        "teamindex %s serving http://%s:%s/simple/ (data dir %s, %d threads)",
        __version__,
        host,
        port,
        settings.data_dir.resolve(),
        settings.threads,
    )
    if svc.db.count_users() == 0:
        _no_users_hint(settings)


def _serve(
    settings: Settings, options: dict[str, Any], listening: Callable[[Any, Services], None]
) -> Services:
    """Serve boot.serving's stack until stopped: answering at once, Flask loading meanwhile
    (cold start, issue 14). `listening(server, services)` runs once the socket is bound.
    The services, once stopped."""
    from ..boot import serving
    from ..ops.serving import make_wsgi_server, serve_until_stopped, tune_for_serving

    stack = serving(settings, _flask_wsgi)
    server = make_wsgi_server(stack.wsgi, stack.svc, options, stack.pre_answer)
    listening(server, stack.svc)
    tune_for_serving()  # quiet queue warnings, frozen start-up objects, GIL switch interval
    stack.flask.start()
    serve_until_stopped(server)  # SIGTERM: stop accepting, finish in-flight requests
    # Download counts (and --audit-downloads rows) are batched in memory: write the last ones.
    stack.svc.audit.flush()
    return stack.svc


def _flask_wsgi(svc: Services, counters: Metrics) -> WSGIApp:
    """The Flask part of `serve`'s stack, loaded on a thread once the server answers."""
    from ..app import flask_app

    return flask_app(svc, counters).wsgi_app


def _no_users_hint(settings: Settings) -> None:
    log.warning(
        "no users yet: nobody can read or upload. Create the first admin with:\n"
        "    %s adduser NAME --admin --data-dir %s",
        launcher(),
        settings.data_dir,
    )


def _serve_workers(settings: Settings, workers: int) -> int:
    """The parent of `serve --workers N` (N > 1): start-up work once, the socket bound,
    then N children supervised (ops/workers.py)."""
    from ..boot import FORM_OVERHEAD, prepare
    from ..ops import workers as pool

    for handler in logging.getLogger().handlers:  # which worker wrote each line
        handler.setFormatter(logging.Formatter(pool.LOG_FORMAT))
    users = prepare(settings)
    options = settings.waitress_options(FORM_OVERHEAD)
    host, port = options.pop("host"), options.pop("port")
    listening = pool.bind(host, port, backlog=1024)
    bound_host, bound_port = listening[0].getsockname()[:2]
    log.info(
        "teamindex %s serving http://%s:%s/simple/ (data dir %s, %d workers of %d threads)",
        __version__,
        bound_host,
        bound_port,
        settings.data_dir.resolve(),
        workers,
        settings.threads,
    )
    if users == 0:
        _no_users_hint(settings)
    with pool.metrics_dir() as shared:
        supervisor = pool.Supervisor(
            workers,
            lambda: _serve_worker(settings, {**options, "sockets": listening}),
            on_exit=lambda pid: _mark_dead(pid, shared),
        )
        return supervisor.run(listening)


def _mark_dead(pid: int, shared: str) -> None:
    """A worker is gone: prometheus-client merges its live gauges no more."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid, shared)


def _serve_worker(settings: Settings, options: dict[str, Any]) -> int:
    """One child of `serve --workers N`: today's server on the inherited socket(s)."""
    svc = _serve(settings, options, lambda _server, _svc: log.info("worker ready"))
    svc.storage.owner.release()  # the child ends with os._exit: no atexit handlers
    return 0


@command(_adduser_args)
def cmd_adduser(args: argparse.Namespace, settings: Settings) -> int:
    """Create a user (asks for the password twice, or reads it from --password-stdin)."""
    try:
        name = validate_username(args.name)
    except AuthError as exc:
        raise CommandError(str(exc)) from None
    db = open_database(settings)
    if db.get_user(name) is not None:
        raise CommandError(f"user {name!r} already exists")
    password = read_new_password(args)
    try:
        db.add_user(
            name,
            hash_password(password, settings.password_hash),
            is_admin=args.admin,
            now=utc_now(),
        )
    except Conflict as exc:
        raise CommandError(str(exc)) from None
    record_cli_event(db, "user_add", detail=f"{name}{' (admin)' if args.admin else ''}")
    print(f"created {'admin' if args.admin else 'user'} {name}")
    return 0


@command(_password_args)
def cmd_passwd(args: argparse.Namespace, settings: Settings) -> int:
    """Set a user's password; takes effect at once, also for cached logins."""
    db = open_database(settings)
    if db.get_user(args.name) is None:
        raise CommandError(f"no user {args.name!r}")
    password = read_new_password(args)
    db.set_password(args.name, hash_password(password, settings.password_hash))
    record_cli_event(db, "password_change", detail=args.name)
    print(f"password changed for {args.name}")
    return 0


@command(_name_arg)
def cmd_deluser(args: argparse.Namespace, settings: Settings) -> int:
    """Delete a user; their uploads stay."""
    db = open_database(settings)
    if not db.delete_user(args.name):
        raise CommandError(f"no user {args.name!r}")
    record_cli_event(db, "user_delete", detail=args.name)
    print(f"deleted user {args.name}")
    return 0


@command()
def cmd_users(args: argparse.Namespace, settings: Settings) -> int:
    """List users."""
    for user in open_database(settings).list_users():
        print(f"{user.name}{'  (admin)' if user.is_admin else ''}")
    return 0


def _import_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dirs", nargs="+", type=Path, help="directories (or files) to import")
    parser.add_argument("--quiet", action="store_true", help="no progress line")
    parser.add_argument("--owner", help="user who becomes owner of the projects it creates")
    parser.add_argument(
        "--keep-times",
        action="store_true",
        help="upload time from each file's modification time (migrating from pypiserver)",
    )


@command(_import_args)
def cmd_import(args: argparse.Namespace, settings: Settings) -> int:
    """Bulk-import wheels and sdists (e.g. a pypiserver packages/ dir), validated exactly like
    uploads; files already present with the same bytes count as identical.

    Every file is accounted for: the summary counts imported, identical, skipped (not a
    format the index serves: .egg, .tar.bz2, .exe, .msi, .rpm, anything else) and rejected
    (named like a wheel or sdist, refused by the checks), and one line per skipped or
    rejected file gives its reason. Exit status 1 only if a file was rejected: skipped
    files are expected in old directories, a rejected one is a distribution left behind."""
    from ..index.importer import import_paths

    missing = [str(path) for path in args.dirs if not path.exists()]
    if missing:
        raise CommandError(f"no such file or directory: {', '.join(missing)}")
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = open_database(settings)
    storage = open_storage(settings)
    storage.ensure_dirs()
    owner = db.get_user(args.owner) if args.owner else None
    if args.owner and owner is None:
        raise CommandError(f"no user {args.owner!r}")
    report = import_paths(
        db,
        storage,
        args.dirs,
        owner_id=owner.id if owner else None,
        progress=None if args.quiet else sys.stderr,
        keep_times=args.keep_times,
    )
    for path, reason in report.skipped:
        print(f"  skipped {path}: {reason}")
    for path, reason in report.rejected:
        print(f"  rejected {path}: {reason}")
    print(report.summary())
    return 1 if report.rejected else 0


OPTIONS_BY_NAME = {option.name: option for option in OPTIONS}


def add_data_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        "--data",
        dest="data_dir",
        type=Path,
        default=argparse.SUPPRESS,
        help="data directory (env TEAMINDEX_DATA_DIR, default ./data)",
    )
    parser.add_argument(
        "--database-url",
        dest="database_url",
        type=OPTIONS_BY_NAME["database_url"].parse,
        default=argparse.SUPPRESS,
        help="metadata database (env TEAMINDEX_DATABASE_URL; default: SQLite in the data dir)",
    )


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The whole command line; only this module's commands when `argv` names one of them.

    Why: `serve` is started cold (a restart, a container, a bench), and the other command
    modules import what serving never needs (backup, integrity, the upstream cache's HTTP
    client); they cost ~70 ms before the first request. No argv, `--help` and unknown
    words see every command."""
    if not (argv and argv[0] in COMMANDS):
        # Importing these modules registers their commands.
        from . import (
            access,  # noqa: F401 - token, grant, project, allow, audit
            docs,  # noqa: F401 - upload-docs
            ops,  # noqa: F401 - yank, unyank, delete, backup, restore, check, config
            publisher,  # noqa: F401 - trusted publishers
            store,  # noqa: F401 - migrate-store
            throttle,  # noqa: F401 - throttle list, throttle clear
            upstream,  # noqa: F401 - protect, cache
        )

    parser = argparse.ArgumentParser(prog="teamindex", description=__doc__)
    parser.add_argument("--version", action="version", version=f"teamindex {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (func, setup) in COMMANDS.items():
        help_text = " ".join((func.__doc__ or "").strip().split("\n\n")[0].split())
        child = sub.add_parser(name, help=help_text, description=func.__doc__)
        add_data_dir(child)
        setup(child)
        for action in child._actions:  # nested verbs (token create ...) take it too
            if isinstance(action, argparse._SubParsersAction):
                for verb in action.choices.values():
                    add_data_dir(verb)
        child.set_defaults(func=func)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(argv).parse_args(argv)
    flags: dict[str, Any] = {option.name: getattr(args, option.name, None) for option in OPTIONS}
    try:
        settings = load_settings(flags)
        return int(args.func(args, settings))
    except (CommandError, ValueError, StorageError, StorageUnavailable) as exc:
        print(f"teamindex: error: {exc}", file=sys.stderr)
        return 1
