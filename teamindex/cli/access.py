"""Access-control commands: token, grant, revoke, project, allow, audit.

Every change is written to the audit log as done by `cli:<os user>`.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from datetime import datetime, timezone

from packaging.utils import canonicalize_name

from ..access.audit import parse_since
from ..access.auth import AuthError, new_token_secret, parse_expiry, token_digest
from ..access.netrules import parse_cidr
from ..access.permissions import ROLES, SCOPES
from ..clock import utc_now
from ..config import Settings
from ..db import Conflict, Database
from ..index.dists import DistributionError, project_pattern, validate_project_name
from ..models import Project, Token, User
from .base import CommandError, command, open_database, record_cli_event


def _user(db: Database, name: str) -> User:
    user = db.get_user(name)
    if user is None:
        raise CommandError(f"no user {name!r}")
    return user


def _project(db: Database, name: str) -> Project:
    try:
        project = db.get_project(validate_project_name(name))
    except DistributionError as exc:
        raise CommandError(str(exc)) from None
    if project is None:
        raise CommandError(f"no project {name!r}")
    return project


# -- token ------------------------------------------------------------------------------------


def _token_args(parser: argparse.ArgumentParser) -> None:
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    create = verbs.add_parser("create", help="create a token and print its secret once")
    create.add_argument("user", help="the token's owner; the token never exceeds their rights")
    create.add_argument("--scope", choices=SCOPES, default="read", help="read (default) or upload")
    create.add_argument(
        "--project",
        action="append",
        default=[],
        metavar="NAME_OR_GLOB",
        help="limit to these projects (repeatable; globs like team-*)",
    )
    create.add_argument("--expires", default="90d", help="90d, 12h, a date, or never (default 90d)")
    create.add_argument(
        "--allow-ip",
        action="append",
        default=[],
        metavar="CIDR",
        help="accept the token only from these addresses (repeatable)",
    )
    create.add_argument("--note", default="", help="what the token is for")
    listing = verbs.add_parser("list", help="list tokens (never their secrets)")
    listing.add_argument("user", nargs="?", help="only this user's tokens")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    revoke = verbs.add_parser("revoke", help="revoke a token at once")
    revoke.add_argument("id", type=int)
    rotate = verbs.add_parser("rotate", help="give a token a new secret, same rights")
    rotate.add_argument("id", type=int)


@command(_token_args)
def cmd_token(args: argparse.Namespace, settings: Settings) -> int:
    """Manage API tokens: create, list, revoke, rotate. Use a token as the password with
    user name __token__ (or the owner's name)."""
    db = open_database(settings)
    now = datetime.now(timezone.utc)
    if args.verb == "create":
        user = _user(db, args.user)
        try:
            expires = parse_expiry(args.expires, now)
            allow_ips = [str(parse_cidr(cidr)) for cidr in args.allow_ip]
            projects = [_project_pattern(p) for p in args.project]
        except (AuthError, ValueError) as exc:
            raise CommandError(str(exc)) from None
        secret = new_token_secret()
        token_id = db.add_token(
            user.id,
            token_digest(secret),
            scope=args.scope,
            projects=projects,
            allow_ips=allow_ips,
            note=args.note,
            expires=expires,
            now=utc_now(),
        )
        record_cli_event(
            db, "token_create", token_id=token_id, detail=f"for {user.name}, {args.scope}"
        )
        print(f"token {token_id} for {user.name} ({args.scope}, expires {expires or 'never'}):")
        print(secret)
        print("Store it now: it is not shown again.", file=sys.stderr)
    elif args.verb == "list":
        user_id = _user(db, args.user).id if args.user else None
        tokens = db.list_tokens(user_id)
        minted = db.minted_details()
        if args.json:
            print(json.dumps([_token_json(token, minted) for token in tokens], indent=2))
        for token in [] if args.json else tokens:
            state = "revoked" if token.revoked else f"expires {token.expires or 'never'}"
            if token.id in minted:
                state += " trusted publishing: repository {} workflow {} ref {} run {}".format(
                    *minted[token.id]
                )
            print(
                f"{token.id:>4}  {token.user_name:<16} {token.scope:<6} {state:<40} "
                f"projects={','.join(token.projects) or '*'} "
                f"ips={','.join(token.allow_ips) or '*'} created={token.created[:19]} "
                f"last_used={(token.last_used or 'never')[:19]} last_ip={token.last_ip or '-'} "
                f"note={token.note!r}"
            )
    elif args.verb == "revoke":
        if not db.revoke_token(args.id, utc_now()):
            raise CommandError(f"no active token {args.id}")
        record_cli_event(db, "token_revoke", token_id=args.id)
        print(f"revoked token {args.id}")
    else:  # rotate
        secret = new_token_secret()
        if not db.replace_token_digest(args.id, token_digest(secret)):
            raise CommandError(f"no active token {args.id}")
        record_cli_event(db, "token_rotate", token_id=args.id)
        print(f"token {args.id} has a new secret (the old one stopped working):")
        print(secret)
    return 0


def _token_json(token: Token, minted: dict[int, tuple[str, str, str, str]]) -> dict:
    """A token as JSON; one minted by trusted publishing says from which CI run."""
    fields = asdict(token)
    if token.id in minted:
        keys = ("repository", "workflow", "ref", "run_id")
        fields["trusted_publishing"] = dict(zip(keys, minted[token.id], strict=True))
    return fields


def _project_pattern(text: str) -> str:
    return project_pattern(text)


# -- grant / revoke ---------------------------------------------------------------------------


def _grant_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("user")
    parser.add_argument("project")
    parser.add_argument("role", choices=ROLES)


@command(_grant_args)
def cmd_grant(args: argparse.Namespace, settings: Settings) -> int:
    """Give a user a role in a project: owner, maintainer (upload, yank) or reader."""
    db = open_database(settings)
    user, project = _user(db, args.user), _project(db, args.project)
    db.set_role(user.id, project.id, args.role)
    record_cli_event(db, "grant", project=project.name, detail=f"{user.name} {args.role}")
    print(f"{user.name} is now {args.role} of {project.name}")
    return 0


def _revoke_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("user")
    parser.add_argument("project")


@command(_revoke_args)
def cmd_revoke(args: argparse.Namespace, settings: Settings) -> int:
    """Remove a user's role in a project."""
    db = open_database(settings)
    user, project = _user(db, args.user), _project(db, args.project)
    if not db.remove_role(user.id, project.id):
        raise CommandError(f"{user.name} has no role in {project.name}")
    record_cli_event(db, "revoke", project=project.name, detail=user.name)
    print(f"{user.name} no longer has a role in {project.name}")
    return 0


# -- project ----------------------------------------------------------------------------------


def _project_args(parser: argparse.ArgumentParser) -> None:
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    create = verbs.add_parser("create", help="reserve a project name before its first upload")
    create.add_argument("name")
    create.add_argument("--visibility", choices=("team", "restricted"), default="team")
    create.add_argument("--owner", help="user to make the owner")
    set_ = verbs.add_parser("set", help="change a project's visibility or upstream controls")
    set_.add_argument("name")
    set_.add_argument("--visibility", choices=("team", "restricted"))
    set_.add_argument(
        "--upstream",
        choices=("allow", "deny", "default"),
        help="allow: mix upstream's files in; deny: never upstream; default: the usual rule",
    )
    set_.add_argument(
        "--min-age", help="this project's upstream cooldown (0 exempts it; default: the index's)"
    )
    show = verbs.add_parser("show", help="roles, visibility and counts of a project")
    show.add_argument("name")


@command(_project_args)
def cmd_project(args: argparse.Namespace, settings: Settings) -> int:
    """Manage projects: create (reserve a name), set --visibility team|restricted, show.
    A restricted project is invisible (404) to everyone without a role in it."""
    db = open_database(settings)
    if args.verb == "create":
        try:
            name = validate_project_name(args.name)
        except DistributionError as exc:
            raise CommandError(str(exc)) from None
        owner = _user(db, args.owner) if args.owner else None
        try:
            project = db.create_project(name, args.name, args.visibility, utc_now())
        except Conflict as exc:
            raise CommandError(str(exc)) from None
        if owner is not None:
            db.set_role(owner.id, project.id, "owner")
        record_cli_event(db, "project_create", project=name, detail=args.visibility)
        print(f"created project {name} ({args.visibility})")
    elif args.verb == "set":
        if args.visibility is None and args.upstream is None and args.min_age is None:
            raise CommandError("give --visibility, --upstream or --min-age")
        if args.upstream is not None or args.min_age is not None:
            _set_upstream_controls(db, settings, args)
        if args.visibility is not None:
            project = _project(db, args.name)
            db.set_visibility(project.name, args.visibility)
            record_cli_event(
                db, "project_set", project=project.name, detail=f"visibility={args.visibility}"
            )
            print(f"{project.name} is now {args.visibility}")
    else:
        project = _project(db, args.name)
        releases, files, size = db.project_counts(project.id)
        print(f"project     {project.display_name} ({project.name})")
        print(f"visibility  {project.visibility}")
        print(f"releases    {releases}\nfiles       {files}\nbytes       {size}")
        for user_name, role in db.project_roles(project.id):
            print(f"role        {user_name}: {role}")
    return 0


def _set_upstream_controls(db: Database, settings: Settings, args: argparse.Namespace) -> None:
    """Origin control and cooldown exemption of one name (issue 13); the name need not
    exist here (an upstream project can be exempted from the cooldown)."""
    from ..config import parse_duration

    changes: dict[str, str | int | None] = {}
    try:
        name = validate_project_name(args.name)
        if args.min_age is not None:
            default = args.min_age == "default"
            changes["min_age"] = None if default else int(parse_duration(args.min_age))
    except (DistributionError, ValueError) as exc:
        raise CommandError(str(exc)) from None
    if args.upstream is not None:
        changes["mode"] = None if args.upstream == "default" else args.upstream
    db.set_upstream_rule(name, changes)
    detail = " ".join(
        part
        for part in (
            f"upstream={args.upstream}" if args.upstream else "",
            f"min-age={args.min_age}" if args.min_age else "",
        )
        if part
    )
    record_cli_event(db, "project_set", project=name, detail=detail)
    print(f"{name}: {detail}")


# -- allow ------------------------------------------------------------------------------------


def _allow_args(parser: argparse.ArgumentParser) -> None:
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    add = verbs.add_parser("add", help="allow a CIDR (global list, or --user's list)")
    add.add_argument("cidr")
    add.add_argument("--user", help="add to this user's list instead of the global one")
    add.add_argument("--note", default="")
    remove = verbs.add_parser("remove", help="remove a CIDR")
    remove.add_argument("cidr")
    remove.add_argument("--user")
    verbs.add_parser("list", help="show all lists")


@command(_allow_args)
def cmd_allow(args: argparse.Namespace, settings: Settings) -> int:
    """IP allowlists: the global one (empty = every address may connect) and per-user ones.
    Requests from outside the global list get 403 before any credential is checked."""
    db = open_database(settings)
    if args.verb == "list":
        entries = db.list_allow_entries()
        if not entries:
            print("no allowlist entries: every address may connect")
        for entry in entries:
            print(f"{entry.user or '(global)':<16} {entry.cidr:<40} {entry.note}")
        return 0
    try:
        cidr = str(parse_cidr(args.cidr))
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    user_id = _user(db, args.user).id if args.user else None
    scope = f"user {args.user}" if args.user else "global"
    if args.verb == "add":
        try:
            db.add_allow(cidr, user_id, args.note, utc_now())
        except Conflict as exc:
            raise CommandError(str(exc)) from None
        record_cli_event(db, "allow_add", detail=f"{scope} {cidr}")
        print(f"allowed {cidr} ({scope})")
    else:
        if not db.remove_allow(cidr, user_id):
            raise CommandError(f"{cidr} is not on the {scope} allowlist")
        record_cli_event(db, "allow_remove", detail=f"{scope} {cidr}")
        print(f"removed {cidr} ({scope})")
    return 0


# -- audit ------------------------------------------------------------------------------------


def _audit_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--since", default="7d", help="7d, 12h, 30m or a date (default 7d)")
    parser.add_argument("--user")
    parser.add_argument("--project")
    parser.add_argument("--action")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument(
        "--limit", type=int, default=1000, help="most events shown, newest first (default 1000)"
    )
    parser.add_argument(
        "--before", type=int, metavar="ID", help="only events older than event ID (next page)"
    )


@command(_audit_args)
def cmd_audit(args: argparse.Namespace, settings: Settings) -> int:
    """Show the audit log, newest first: logins that failed, uploads, yanks, token and
    permission changes, refused uploads, yanks and docs uploads. At most --limit events; when
    there are more, a last line (JSON: {"truncated": true, "before": ID}) says how to page
    on with --before ID. Downloads are counted per file per day, listed as 'download'; with
    `serve --audit-downloads` each download is also an event (`--action download --user U`:
    what U fetched, with which token, from where)."""
    db = open_database(settings)
    now = datetime.now(timezone.utc)
    try:
        since = parse_since(args.since, now)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    project = canonicalize_name(args.project) if args.project else None
    if args.limit < 1:
        raise CommandError("--limit must be at least 1")
    events = db.query_audit(
        since=since,
        user=args.user,
        project=project,
        action=args.action,
        limit=args.limit + 1,
        newest_first=True,
        before=args.before,
    )
    more, events = len(events) > args.limit, events[: args.limit]
    for event in events:
        if args.json:
            print(json.dumps(asdict(event)))
        else:
            print(
                f"#{event.id} {event.time[:19]} {event.action:<15} {event.outcome:<9} "
                f"user={event.user or '-'} ip={event.ip or '-'} "
                f"token={event.token_id or '-'} {event.project} {event.filename} {event.detail}"
            )
    if args.action in (None, "download") and args.user is None:
        for day, proj, filename, count in db.download_counts(since[:10]):
            if project is None or proj == project:
                if args.json:
                    print(
                        json.dumps(
                            {
                                "day": day,
                                "action": "download",
                                "project": proj,
                                "filename": filename,
                                "count": count,
                            }
                        )
                    )
                else:
                    print(f"{day}          download        x{count:<8} {proj} {filename}")
    if more:
        last = events[-1].id
        if args.json:
            print(json.dumps({"truncated": True, "before": last}))
        else:
            print(f"... truncated at {args.limit} events; older ones: --before {last}")
    return 0
