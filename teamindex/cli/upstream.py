"""Upstream proxy commands: protect (names never sent upstream) and cache (status, prune)."""

from __future__ import annotations

import argparse

from ..config import Settings
from ..index.dists import DistributionError, project_pattern
from ..upstream.files import FileCache
from .base import CommandError, command, open_database, record_cli_event


def _protect_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "words",
        nargs="+",
        metavar="PATTERN | list | remove PATTERN",
        help="a name or glob over normalized names (acme-*) to protect; `list`; `remove PATTERN`",
    )


@command(_protect_args)
def cmd_protect(args: argparse.Namespace, settings: Settings) -> int:
    """Protect project names from the upstream proxy: `protect 'acme-*'`, `protect list`,
    `protect remove 'acme-*'`. A protected name never shows upstream files, is never sent
    upstream, and may be uploaded here without a claim. Takes effect on the next request."""
    db = open_database(settings)
    words = args.words
    if words == ["list"]:
        for pattern in db.upstream_rules().protected:
            print(pattern)
        return 0
    remove = words[0] == "remove"
    if remove or words[0] == "add":
        words = words[1:]
    if len(words) != 1:
        raise CommandError("usage: protect PATTERN | protect list | protect remove PATTERN")
    try:
        pattern = project_pattern(words[0])
    except (DistributionError, ValueError) as exc:
        raise CommandError(str(exc)) from None
    if not db.set_protected(pattern, not remove) and remove:
        raise CommandError(f"{pattern!r} is not protected")
    record_cli_event(db, "protect_remove" if remove else "protect_add", detail=pattern)
    print(f"{'no longer ' if remove else ''}protected: {pattern}")
    return 0


def _cache_args(parser: argparse.ArgumentParser) -> None:
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    verbs.add_parser("status", help="files and bytes of cached upstream files, and the cap")
    prune = verbs.add_parser("prune", help="evict down to the cap (or everything with --all)")
    prune.add_argument("--all", action="store_true", help="remove every cached upstream file")


@command(_cache_args)
def cmd_cache(args: argparse.Namespace, settings: Settings) -> int:
    """The upstream file cache: `cache status`, `cache prune [--all]`. Evicts the least
    recently downloaded first; hosted (uploaded) files are never touched."""
    cache = FileCache(None, settings.upstream_dir, settings.upstream_cache_size)
    if args.verb == "status":
        status = cache.status()
        print(f"files   {status.files}\nbytes   {status.bytes}\nlimit   {status.limit}")
        return 0
    db = open_database(settings)
    files, freed = cache.evict(limit=0 if args.all else None)
    record_cli_event(db, "cache_prune", detail=f"{files} files, {freed} bytes")
    print(f"removed {files} files, {freed} bytes")
    return 0
