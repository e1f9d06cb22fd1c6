"""What every command module shares: the registry, errors, the database and the audit."""

from __future__ import annotations

import argparse
import getpass
from collections.abc import Callable
from typing import Any

from ..access.audit import AuditLog
from ..config import Settings
from ..db import Database


class CommandError(Exception):
    """A failure to report as one line on stderr with exit status 1."""


Command = Callable[[argparse.Namespace, Settings], int]
COMMANDS: dict[str, tuple[Command, Callable[[argparse.ArgumentParser], None]]] = {}


def command(
    setup: Callable[[argparse.ArgumentParser], None] = lambda parser: None,
) -> Callable[[Command], Command]:
    """Register a subcommand named after the function (underscores become dashes)."""

    def register(func: Command) -> Command:
        COMMANDS[func.__name__.removeprefix("cmd_").replace("_", "-")] = (func, setup)
        return func

    return register


def open_database(settings: Settings) -> Database:
    """The database of an existing data dir, migrated; a missing dir is an error."""
    if not settings.data_dir.is_dir():
        raise CommandError(
            f"data dir {settings.data_dir} does not exist "
            "(create it, or start `teamindex serve` once)"
        )
    db = Database(settings.database)
    db.migrate()
    return db


def record_cli_event(db: Database, action: str, **fields: Any) -> None:
    """Audit a change made from the command line, as done by `cli:<os user>`."""
    try:
        actor = f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        actor = "cli"
    AuditLog(db).record(action, user=actor, **fields)
