"""Which CI identity a publisher names, and whether a verified token's claims are it. Pure.

A publisher is stored as (kind, issuer, claims): `claims` holds what the admin registered,
and `mismatch()` says, claim by claim, why a token is not that identity. The claim names
and shapes are GitHub's and GitLab's (their OIDC documentation); the generic kind compares
each listed claim for equality, for Forgejo/Gitea Actions, Buildkite, CircleCI and others.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ...models import Publisher

GITHUB_ISSUER = "https://token.actions.githubusercontent.com"
GITLAB_ISSUER = "https://gitlab.com"
KINDS = ("github", "gitlab", "oidc")

_REPOSITORY = re.compile(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+")
_WORKFLOW = re.compile(r"[A-Za-z0-9_.-]+\.ya?ml")
_GITLAB_PATH = re.compile(r"[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)+")
_CLAIM_NAME = re.compile(r"[A-Za-z0-9_:.-]+")
# Claims the token check itself owns: matching them here would add nothing or mislead.
_RESERVED = frozenset({"iss", "aud", "exp", "nbf", "iat", "jti"})


class PublisherError(ValueError):
    """A publisher that cannot be registered as given; str() is the reason."""


def check_issuer(url: str) -> str:
    """An issuer is an https URL without query or fragment (OpenID Connect Discovery 1.0,
    section 2); its keys are fetched from there, so plain http would let anyone on the path
    sign tokens. No exception for loopback: an issuer with a private CA is trusted through
    `--oidc-ca-file` (the tests do that too)."""
    text = url.strip().rstrip("/")
    parts = urlsplit(text)
    if parts.scheme != "https" or not parts.hostname or parts.query or parts.fragment:
        raise PublisherError(f"issuer must be an https URL without query or credentials: {url!r}")
    return text


def github_claims(
    repository: str, workflow: str, owner_id: str, environment: str | None
) -> dict[str, str]:
    """What a GitHub publisher matches. The owner's numeric id is required: account names
    can be deleted and registered again by someone else, ids are never reused."""
    if not _REPOSITORY.fullmatch(repository):
        raise PublisherError(f"--repository must be OWNER/REPO, not {repository!r}")
    workflow = workflow.removeprefix(".github/workflows/")
    if not _WORKFLOW.fullmatch(workflow):
        raise PublisherError(f"--workflow must be a file name like release.yml, not {workflow!r}")
    if not owner_id.isdigit():
        raise PublisherError(f"--repository-owner-id must be a number, not {owner_id!r}")
    claims = {"repository": repository, "repository_owner_id": owner_id, "workflow": workflow}
    return claims | ({"environment": environment} if environment else {})


def gitlab_claims(
    project_path: str, ci_config_ref_uri: str, environment: str | None
) -> dict[str, str]:
    """What a GitLab publisher matches. `ci_config_ref_uri` with `@ref` must equal the
    token's; without it, any ref of that pipeline file matches."""
    if not _GITLAB_PATH.fullmatch(project_path):
        raise PublisherError(f"--project-path must be GROUP/PROJECT, not {project_path!r}")
    if "//" not in ci_config_ref_uri:
        raise PublisherError(
            "--ci-config-ref-uri looks like HOST/GROUP/PROJECT//.gitlab-ci.yml[@refs/heads/main],"
            f" not {ci_config_ref_uri!r}"
        )
    claims = {"project_path": project_path, "ci_config_ref_uri": ci_config_ref_uri}
    return claims | ({"environment": environment} if environment else {})


def generic_claims(pairs: list[str]) -> dict[str, str]:
    """`--claim name=value` pairs; at least one, or any token of the issuer would match."""
    claims: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not _CLAIM_NAME.fullmatch(name) or not value:
            raise PublisherError(f"--claim takes NAME=VALUE, not {pair!r}")
        if name in _RESERVED:
            raise PublisherError(f"claim {name!r} is checked for every token; name others")
        claims[name] = value
    if not claims:
        raise PublisherError("an oidc publisher needs at least one --claim NAME=VALUE")
    return claims


@dataclass(frozen=True)
class Mismatch:
    """Why a token is not a publisher: the check that failed and how many passed before it
    (the publisher that got furthest explains a refusal best)."""

    passed: int
    check: str
    reason: str


def _text(claims: Mapping[str, Any], name: str) -> str:
    value = claims.get(name)
    return "" if value is None else str(value)


def mismatch(publisher: Publisher, claims: Mapping[str, Any]) -> Mismatch | None:
    """None when the verified token `claims` are the publisher's identity, else the first
    failed check. Messages show the token's own values (its holder knows them), never the
    registered ones."""
    checks = _CHECKS[publisher.kind](publisher.claims, claims)
    for passed, (check, ok, reason) in enumerate(checks):
        if not ok:
            return Mismatch(passed, check, reason)
    return None


Check = tuple[str, bool, str]


def _github_checks(want: Mapping[str, str], got: Mapping[str, Any]) -> list[Check]:
    repository = _text(got, "repository")
    # job_workflow_ref names the workflow file whose code runs this job:
    # OWNER/REPO/.github/workflows/FILE@REF. GitHub names are case-insensitive.
    prefix = f"{want['repository']}/.github/workflows/{want['workflow']}@".lower()
    job_ref = _text(got, "job_workflow_ref")
    checks = [
        (
            "repository",
            repository.lower() == want["repository"].lower(),
            f"no publisher for repository {repository!r}",
        ),
        (
            "repository_owner_id",
            _text(got, "repository_owner_id") == want["repository_owner_id"],
            f"repository_owner_id {_text(got, 'repository_owner_id')!r} is not the owner"
            " registered (was the account renamed or re-created?)",
        ),
        (
            "workflow",
            job_ref.lower().startswith(prefix),
            f"job_workflow_ref {job_ref!r} is not the registered workflow file",
        ),
    ]
    return checks + _environment_check(want, got)


def _environment_check(want: Mapping[str, str], got: Mapping[str, Any]) -> list[Check]:
    if "environment" not in want:
        return []
    environment = _text(got, "environment")
    return [
        (
            "environment",
            environment.lower() == want["environment"].lower(),
            f"environment {environment or '(none)'!r} is not the registered environment",
        )
    ]


def _gitlab_checks(want: Mapping[str, str], got: Mapping[str, Any]) -> list[Check]:
    path = _text(got, "project_path")
    config = _text(got, "ci_config_ref_uri")
    wanted_config = want["ci_config_ref_uri"]
    config_ok = (
        config == wanted_config if "@" in wanted_config else config.startswith(wanted_config + "@")
    )
    checks = [
        ("project_path", path == want["project_path"], f"no publisher for project {path!r}"),
        (
            "ci_config_ref_uri",
            config_ok,
            f"ci_config_ref_uri {config!r} is not the registered pipeline file and ref",
        ),
    ]
    return checks + _environment_check(want, got)


def _generic_checks(want: Mapping[str, str], got: Mapping[str, Any]) -> list[Check]:
    return [
        (name, _text(got, name) == value, f"claim {name} {_text(got, name)!r} does not match")
        for name, value in sorted(want.items())
    ]


_CHECKS = {"github": _github_checks, "gitlab": _gitlab_checks, "oidc": _generic_checks}


def run_details(kind: str, claims: Mapping[str, Any]) -> tuple[str, str, str, str]:
    """(repository, workflow, ref, run id) of a CI run, for `token list` and the audit."""
    if kind == "github":
        workflow = _text(claims, "job_workflow_ref").split("@", 1)[0].rsplit("/", 1)[-1]
        return (
            _text(claims, "repository"),
            workflow,
            _text(claims, "ref"),
            _text(claims, "run_id"),
        )
    if kind == "gitlab":
        config = _text(claims, "ci_config_ref_uri").split("@", 1)[0].rsplit("//", 1)[-1]
        return (
            _text(claims, "project_path"),
            config,
            _text(claims, "ref"),
            _text(claims, "pipeline_id"),
        )
    return (
        _text(claims, "repository") or _text(claims, "sub"),
        _text(claims, "workflow"),
        _text(claims, "ref"),
        _text(claims, "run_id"),
    )


def describe(publisher: Publisher) -> str:
    """One line naming what the publisher matches, for listings."""
    details = ", ".join(f"{name}={value}" for name, value in sorted(publisher.claims.items()))
    return f"{publisher.kind} {publisher.issuer} {details}"
