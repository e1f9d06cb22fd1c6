"""Trusted publishers (issue 15): CI identities that may trade their OIDC token for a
15-minute upload token. Every change is audited as done by `cli:<os user>`."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict

from ..access.oidc.claims import (
    GITHUB_ISSUER,
    GITLAB_ISSUER,
    PublisherError,
    describe,
    generic_claims,
    github_claims,
    gitlab_claims,
)
from ..access.oidc.exchange import default_audience
from ..access.oidc.registry import register
from ..access.sessionkey import load_secret_key
from ..clock import utc_now
from ..config import Settings
from ..db import Conflict
from ..index.dists import DistributionError, validate_project_name
from .base import CommandError, command, open_database, record_cli_event


def _publisher_args(parser: argparse.ArgumentParser) -> None:
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    add = verbs.add_parser("add", help="register a publisher for a project")
    add.add_argument("project", help="the project (need not exist yet: a pending publisher)")
    kinds = add.add_subparsers(dest="kind", required=True, metavar="KIND")
    github = kinds.add_parser("github", help="a GitHub Actions workflow")
    github.add_argument("--repository", required=True, metavar="OWNER/REPO")
    github.add_argument(
        "--repository-owner-id",
        required=True,
        metavar="ID",
        help="the owner's numeric id (`gh api users/OWNER --jq .id`): a deleted and "
        "re-registered account name then cannot publish",
    )
    github.add_argument("--workflow", required=True, metavar="FILE", help="e.g. release.yml")
    github.add_argument("--environment", help="require this GitHub environment")
    github.add_argument("--issuer", default=GITHUB_ISSUER, help="GitHub Enterprise's issuer")
    gitlab = kinds.add_parser("gitlab", help="a GitLab CI pipeline")
    gitlab.add_argument("--issuer", default=GITLAB_ISSUER, help="self-managed GitLab's URL")
    gitlab.add_argument("--project-path", required=True, metavar="GROUP/PROJECT")
    gitlab.add_argument(
        "--ci-config-ref-uri",
        required=True,
        metavar="URI",
        help="HOST/GROUP/PROJECT//.gitlab-ci.yml, with @refs/heads/main to pin the ref",
    )
    gitlab.add_argument("--environment", help="require this GitLab environment")
    generic = kinds.add_parser("oidc", help="any OIDC issuer, with claims that must be equal")
    generic.add_argument("--issuer", required=True, help="the issuer's https URL")
    generic.add_argument(
        "--claim", action="append", default=[], metavar="NAME=VALUE", help="repeatable"
    )
    for kind in (github, gitlab, generic):
        kind.add_argument(
            "--user",
            required=True,
            help="the owner or admin whose rights minted tokens narrow (an admin for a "
            "project that does not exist yet: its first upload makes them its owner)",
        )
    listing = verbs.add_parser("list", help="list publishers")
    listing.add_argument("project", nargs="?", help="only this project's")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    remove = verbs.add_parser("remove", help="remove a publisher and revoke its live tokens")
    remove.add_argument("id", type=int)
    verbs.add_parser("audience", help="print the audience CI jobs must ask their token for")


def _claims(args: argparse.Namespace) -> dict[str, str]:
    if args.kind == "github":
        return github_claims(
            args.repository, args.workflow, args.repository_owner_id, args.environment
        )
    if args.kind == "gitlab":
        return gitlab_claims(args.project_path, args.ci_config_ref_uri, args.environment)
    return generic_claims(args.claim)


@command(_publisher_args)
def cmd_publisher(args: argparse.Namespace, settings: Settings) -> int:
    """Manage trusted publishers: add PROJECT github|gitlab|oidc ..., list, remove ID,
    audience. A matching CI job trades its OIDC token at /_/oidc/mint-token for an upload
    token limited to the project, valid 15 minutes at most."""
    db = open_database(settings)
    if args.verb == "audience":
        print(settings.oidc_audience or default_audience(load_secret_key(settings.data_dir)))
    elif args.verb == "add":
        user = db.get_user(args.user)
        if user is None:
            raise CommandError(f"no user {args.user!r}")
        try:
            project = validate_project_name(args.project)
            publisher = register(db, user, project, args.kind, args.issuer, _claims(args))
        except (PublisherError, DistributionError, Conflict) as exc:
            raise CommandError(str(exc)) from None
        state = " (pending: its first upload creates the project)" if publisher.pending else ""
        record_cli_event(
            db,
            "publisher_add",
            project=project,
            detail=f"id {publisher.id} for {user.name}: {describe(publisher)}",
        )
        print(f"publisher {publisher.id} for {project}{state}: {describe(publisher)}")
    elif args.verb == "list":
        project = validate_project_name(args.project) if args.project else None
        publishers = db.list_publishers(project)
        if args.json:
            print(json.dumps([asdict(publisher) for publisher in publishers], indent=2))
        for publisher in [] if args.json else publishers:
            pending = " pending" if publisher.pending else ""
            print(
                f"{publisher.id:>4}  {publisher.project:<24}{pending} by={publisher.user_name} "
                f"{describe(publisher)}"
            )
    else:  # remove
        publisher = db.get_publisher(args.id)
        if publisher is None or not db.remove_publisher(args.id, utc_now()):
            raise CommandError(f"no publisher {args.id}")
        record_cli_event(
            db, "publisher_remove", project=publisher.project, detail=describe(publisher)
        )
        print(f"removed publisher {args.id} of {publisher.project} (its live tokens revoked)")
    return 0
