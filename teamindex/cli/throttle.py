"""The login throttle from the command line: list what it counts and blocks, clear it.

The server reads the throttle from the database on every new login, so a clear here takes
effect at the next request. Every clear is audited as done by `cli:<os user>`.
"""

from __future__ import annotations

import argparse
import json
import time

from ..access.netrules import normalize_address, throttle_view, user_key
from ..config import Settings
from ..db import Database
from .base import CommandError, command, open_database, record_cli_event


def _throttle_args(parser: argparse.ArgumentParser) -> None:
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    listing = verbs.add_parser(
        "list", help="addresses and user names with failed logins in the window, or a block"
    )
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    clear = verbs.add_parser("clear", help="lift blocks and forget counted failures")
    target = clear.add_mutually_exclusive_group(required=True)
    target.add_argument(
        "address", nargs="?", help="an address (an IPv6 address stands for its /64)"
    )
    target.add_argument("--user", help="a user name (any spelling of it)")
    target.add_argument("--all", action="store_true", help="every address and user name")


@command(_throttle_args)
def cmd_throttle(args: argparse.Namespace, settings: Settings) -> int:
    """The failed-login throttle: list the addresses (IPv6 by /64) and user names with
    failures in the current window or a block (429), and clear them, e.g. after a
    colleague's script locked the office address out. Clears take effect at once."""
    db = open_database(settings)
    if args.verb == "list":
        now = time.time()
        views = [
            throttle_view(entry, now)
            for entry in db.throttle_entries(now=now, window=settings.throttle_seconds)
        ]
        if args.json:
            print(json.dumps(views, indent=2))
        elif not views:
            print("no failed logins counted, nothing blocked")
        for view in [] if args.json else views:
            state = (
                f"blocked until {view['blocked_until'][:19]} (retry in {view['retry_after']} s)"
                if view["blocked_until"]
                else f"counting since {view['window_start'][:19]}"
            )
            print(
                f"{view['kind']:<8} {view['subject']:<40} "
                f"{view['failures']:>4}/{view['max_failures']:<4} failures  {state}"
            )
        return 0
    kind, subject = _target(args, db)
    if db.clear_throttle(kind, subject) == 0 and kind is not None:
        raise CommandError(f"nothing counted or blocked for {kind} {subject}")
    what = f"{kind} {subject}" if kind else "all"
    record_cli_event(db, "throttle_clear", detail=what)
    print(f"cleared the throttle for {what}")
    return 0


def _target(args: argparse.Namespace, db: Database) -> tuple[str | None, str | None]:
    if args.all:
        return None, None
    if args.user is not None:
        user = db.get_user(args.user)
        return "user", user_key(args.user, user.name if user else None)
    try:
        return "address", normalize_address(args.address)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
