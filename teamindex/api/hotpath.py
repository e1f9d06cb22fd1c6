"""The hot read path: cached simple pages answered before Flask's request machinery.

Almost all of an index's traffic is installers re-reading /simple/ pages with credentials
they sent a moment ago. Flask builds a request context, runs flask-httpauth, the hooks and
the view for each; that, not the page, was most of a request's time (issue 3). This WSGI
layer answers the common case from memory and one SQLite statement, when all of these hold:

- GET /simple/ or /simple/<normalized name>/ with no query string, and an Accept header
  that picks one of our content types;
- the Authorization header was verified by this server, from this client address, at the
  current auth serial (LoginCache; the statement reads the serial), or, on a worker thread,
  it is verified now (access/login.verify, the very check Flask's login_required makes; its
  outcome is left in the environ for Flask, so a refusal is counted and audited once);
- permissions.decide allows READ, on facts read in that same statement;
- the page is in the page cache at the current serial, or, on a worker thread, a hosted
  page is rendered now (simplepages.py, as the Flask view renders it).

The throttle is not asked: a login verified from this address keeps working through a block,
and only new verifications wait (authenticate()); so a blocked office keeps its installs.
Anything else — no or wrong credentials, a redirect, 401/403/404/406/429, a proxied page not
yet fetched — goes to Flask, which answers it. Flask's answer is the
reference: tests check that both paths send the same status, headers and body. Downloads
take the same shortcut under the same rules (hotfiles.py).

Page hits are also answered on waitress' socket thread (ops/serving.py, `pre_answer`): the
decision is the one statement and a cache lookup, bounded work, and handing each request to
a worker thread and its answer back cost more than the answer itself (issue 13).

This module imports neither Flask nor werkzeug (downloads and the proxy load theirs when
first used): `teamindex serve` answers a worker's first /simple/ request before Flask is
loaded, which is most of a cold start (issue 14; boot.py).
"""

from __future__ import annotations

import io
import logging
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from .. import loading
from ..access.login import EARLY_REFUSAL, VERIFIED_KEY, verify_once
from ..access.logincache import VerifiedLogin
from ..access.permissions import Action, Decision, ProjectFacts, decide, listing_view
from ..context import Services
from ..headers import httpauth_credentials
from ..ops.requestlog import USER_KEY
from ..ops.serving import DECISION_KEY
from . import render, simplepages
from .pagecache import CachedPage, page_reply, project_key, root_key

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
CountRequest = Callable[[str, str, int, float], None]

log = logging.getLogger("teamindex")

ROOT_PATH = "/simple/"
# Normalized names only (PEP 503): any other spelling is Flask's 301.
PROJECT_PATH = re.compile(r"/simple/([a-z0-9]+(?:-[a-z0-9]+)*)/")
# Route templates as Flask's url_rule names them, so metrics label both paths alike.
ROOT_RULE = "/simple/"
PROJECT_RULE = "/simple/<name>/"
FILES_PREFIX = "/files/"  # downloads: hotfiles.py, loaded with the first one
# The status lines of page answers as werkzeug writes them, so both paths send the same
# bytes (tests compare them with werkzeug's own table).
PAGE_STATUS_LINES = {200: "200 OK", 304: "304 NOT MODIFIED"}
SEND_BLOCK = 1 << 20
# Pages up to this size are returned as bytes: copied once, sent with the header.
SMALL_BODY = 64 << 10
PageAnswer = tuple[str, CachedPage, str]  # route, page, content type


@dataclass(frozen=True)
class Decided:
    """A page hit decided on waitress' socket thread (HotReads.pre_answer)."""

    answer: PageAnswer
    user: str | None  # for the request log
    admit: VerifiedLogin | None  # a login whose record (_admit) is due: written by a worker
    ip: str


class HotReads:
    """WSGI middleware in front of the Flask app; see the module docstring."""

    def __init__(
        self,
        app: WSGIApp,
        svc: Services,
        count: CountRequest,
        count_download: Callable[[str], None] | None = None,
        files: bool = True,
    ) -> None:
        self.app = app
        self.svc = svc
        self.count = count
        self.count_download = count_download
        # Downloads too (hotfiles), unless a front server sends the files.
        self.files = files

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        started = time.perf_counter()
        if self.files and environ.get("PATH_INFO", "").startswith(FILES_PREFIX):
            return self.download(environ, start_response, started)
        decided = environ.pop(DECISION_KEY, None)  # decided on the socket thread (pre_answer)
        if decided is not None:
            answer = self.decided_answer(environ, decided)
        else:  # not decided there, or declined: this thread may verify and render
            answer = self.checked_answer(environ)
        if answer is None:
            return self.app(environ, start_response)
        rule, page, content_type = answer
        reply = page_reply(
            page,
            render.mimetype(content_type),
            environ.get("HTTP_ACCEPT_ENCODING", ""),
            environ.get("HTTP_IF_NONE_MATCH"),
        )
        start_response(PAGE_STATUS_LINES[reply.status], reply.headers)
        self.count(rule, "GET", reply.status, time.perf_counter() - started)
        if not reply.body:
            return []
        file_wrapper = environ.get("wsgi.file_wrapper")
        if len(reply.body) <= SMALL_BODY or file_wrapper is None:
            return [reply.body]  # sent with the header in one piece (ops/serving.py)
        # Handed over as a file: waitress copies a returned bytes object into its output
        # buffer, but sends from a wsgi.file_wrapper directly (430 KB root page: +30% req/s).
        return file_wrapper(io.BytesIO(reply.body), SEND_BLOCK)

    def download(
        self, environ: dict[str, Any], start_response: Callable[..., Any], started: float
    ) -> Any:
        """A file from hotfiles.answer_download, counted, audited and logged as Flask's
        download is; anything it declines (or fails on) goes to Flask."""
        # Loaded with the first download (it needs werkzeug's HTTP date and range parsing).
        loading.wait()
        from werkzeug.http import HTTP_STATUS_CODES
        from werkzeug.wsgi import wrap_file

        from .hotfiles import FILE_RULE, answer_download

        try:
            found = answer_download(self.svc, environ)
        except Exception:  # a shortcut must not fail a request Flask can still answer
            log.exception("hot path failed; Flask answers %s", environ.get("PATH_INFO"))
            found = None
        if found is None:
            return self.app(environ, start_response)
        ip = environ.get("REMOTE_ADDR") or ""
        self._admit(found.login, ip)
        principal = found.login.principal
        if principal.user is not None:
            environ[USER_KEY] = principal.user.name  # for the request log
        if found.status in (200, 302):  # 302: to the object store's presigned URL
            if self.count_download is not None:
                self.count_download("metadata" if found.metadata else "dist")
            if not found.metadata:
                self.svc.audit.served(found.project, found.filename, principal, ip)
        start_response(f"{found.status} {HTTP_STATUS_CODES[found.status].upper()}", found.headers)
        self.count(FILE_RULE, "GET", found.status, time.perf_counter() - started)
        if found.body is None:
            return []
        return wrap_file(environ, found.body, SEND_BLOCK)

    def pre_answer(self, environ: dict[str, Any]) -> tuple[Decided | None, bool]:
        """For waitress' socket thread (ops/serving.py): the decision, handed to __call__ of
        the same request under DECISION_KEY (None: the worker decides again, where it may
        verify a login and render a page), and whether the socket
        thread may send it. Not when the login's record is due (_admit's database write
        goes to a worker, which may wait for the write lock), nor for downloads (file I/O)."""
        found = self.checked_decision(environ, on_worker=False)
        if found is None:
            return None, False
        answer, login = found
        user = login.principal.user
        ip = environ.get("REMOTE_ADDR") or ""
        due = self._admit_due(login, ip)
        return Decided(answer, user.name if user else None, login if due else None, ip), not due

    def decided_answer(self, environ: dict[str, Any], decided: Decided) -> PageAnswer:
        """The answer pre_answer gave on the socket thread."""
        if decided.admit is not None:
            self._admit(decided.admit, decided.ip)
        if decided.user is not None:
            environ[USER_KEY] = decided.user  # for the request log
        return decided.answer

    def checked_answer(self, environ: dict[str, Any]) -> PageAnswer | None:
        """answer(), with a failure logged and left to Flask."""
        found = self.checked_decision(environ, on_worker=True)
        return None if found is None else self._admitted(environ, *found)

    def checked_decision(
        self, environ: dict[str, Any], on_worker: bool
    ) -> tuple[PageAnswer, VerifiedLogin] | None:
        """decision(), with a failure logged and left to Flask."""
        try:
            return self.decision(environ, on_worker)
        except Exception:  # a shortcut must not fail a request Flask can still answer
            log.exception("hot path failed; Flask answers %s", environ.get("PATH_INFO"))
            return None

    def answer(self, environ: dict[str, Any]) -> PageAnswer | None:
        """(route, page, content type) when the hot path may answer, else None; the login
        is admitted (_admit) and named for the request log. On a worker thread."""
        found = self.decision(environ, on_worker=True)
        return None if found is None else self._admitted(environ, *found)

    def _admitted(
        self, environ: dict[str, Any], answer: PageAnswer, login: VerifiedLogin
    ) -> PageAnswer:
        self._admit(login, environ.get("REMOTE_ADDR") or "")
        if login.principal.user is not None:
            environ[USER_KEY] = login.principal.user.name  # for the request log
        return answer

    def decision(
        self, environ: dict[str, Any], on_worker: bool
    ) -> tuple[PageAnswer, VerifiedLogin] | None:
        """(answer, login) when the hot path may answer, else None. Only reads memory and
        the database, unless `on_worker`: then a login not seen before is verified (which
        writes its record, or a failure's) and a hosted page not yet cached is rendered.
        The socket thread never waits on a write or renders (pre_answer)."""
        # The path first: downloads and uploads pass here too and must cost nothing more.
        path = environ.get("PATH_INFO", "")
        match = None if path == ROOT_PATH else PROJECT_PATH.fullmatch(path)
        if path != ROOT_PATH and match is None:
            return None
        authorization = environ.get("HTTP_AUTHORIZATION")
        if (
            environ.get("REQUEST_METHOD") != "GET"
            or environ.get("QUERY_STRING")
            or not authorization
        ):
            return None
        content_type = render.best_content_type(environ.get("HTTP_ACCEPT", ""))
        if content_type is None:
            return None
        ip = environ.get("REMOTE_ADDR") or ""
        login = self.svc.logins.lookup(authorization, ip)
        if login is None and on_worker:
            login = self._verify(environ, authorization, ip)
        if login is None:
            return None
        if match is None:
            found = self._root_page(content_type, login, on_worker)
            rule = ROOT_RULE
        else:
            found = self._project_page(match.group(1), content_type, login, on_worker)
            rule = PROJECT_RULE
        if found is None:
            return None
        return (rule, found, content_type), login

    def _verify(self, environ: dict[str, Any], authorization: str, ip: str) -> VerifiedLogin | None:
        """The first request of a login: verified here as Flask's login_required would (the
        same credentials, the same login.verify), the outcome kept for Flask under
        VERIFIED_KEY; the login as the cache now holds it, or None (Flask answers).
        Not for a request refused on its headers (Flask's answer_early_refusal audits it)."""
        if EARLY_REFUSAL in environ:
            return None
        credentials = httpauth_credentials(authorization)
        if credentials is None or credentials == ("", ""):
            return None  # no credentials: the anonymous reader's answer is Flask's
        verified = verify_once(self.svc, ip, *credentials, authorization)
        environ[VERIFIED_KEY] = verified
        if verified.principal is None:
            return None
        return self.svc.logins.lookup(authorization, ip)

    def _root_page(
        self, content_type: str, login: VerifiedLogin, on_worker: bool
    ) -> CachedPage | None:
        serial, auth_serial = self.svc.db.serials()
        if auth_serial != login.auth_serial:
            return None
        key = root_key(content_type, listing_view(login.principal))
        if not on_worker:
            return self.svc.pages.get(key, serial)
        return simplepages.root_page(self.svc, login.principal, content_type, serial)

    def _project_page(
        self, name: str, content_type: str, login: VerifiedLogin, on_worker: bool
    ) -> CachedPage | None:
        user = login.principal.user
        if self.svc.upstream is not None:
            return self._upstream_aware_page(name, content_type, login)
        auth_serial, project, role = self.svc.db.project_with_role_at(
            name, user.id if user else None
        )
        if auth_serial != login.auth_serial or project is None:
            return None
        facts = ProjectFacts.of(name, project, role)
        if decide(login.principal, Action.READ, facts) is not Decision.ALLOW:
            return None
        if not on_worker:
            return self.svc.pages.get(project_key(project.name, content_type), project.serial)
        return simplepages.project_page(self.svc, project, content_type)

    def _upstream_aware_page(
        self, name: str, content_type: str, login: VerifiedLogin
    ) -> CachedPage | None:
        """With an upstream: the same one statement also reads the rules' serial, then the
        pure origin decides between the local page and a proxied one (api/proxy.warm_page:
        memory only; an upstream copy past its TTL goes to Flask, which revalidates it)."""
        loading.wait()
        from ..upstream import Origin  # with an upstream only (proxy loads Flask)
        from . import proxy

        upstream = self.svc.upstream
        assert upstream is not None
        user = login.principal.user
        auth_serial, upstream_serial, project, role = self.svc.db.proxy_facts_at(
            name, user.id if user else None
        )
        if auth_serial != login.auth_serial:
            return None
        rules = upstream.rules.at(upstream_serial)
        if upstream.origin(name, project is not None, rules) is Origin.LOCAL:
            if project is None:
                return None
            facts = ProjectFacts.of(name, project, role)
            if decide(login.principal, Action.READ, facts) is not Decision.ALLOW:
                return None
            return self.svc.pages.get(project_key(project.name, content_type), project.serial)
        if not proxy.may_read(login.principal, name, project, role):
            return None
        return proxy.warm_page(upstream, self.svc.pages, name, project, rules, content_type)

    def _admit_due(self, login: VerifiedLogin, ip: str) -> bool:
        """Whether _admit would write to the database now."""
        principal = login.principal
        if principal.token is not None and self.svc.token_touch.due(principal.token.id, ip):
            return True
        return principal.user is not None and self.svc.throttle.success_due(ip, principal.user.name)

    def _admit(self, login: VerifiedLogin, ip: str) -> None:
        """The per-request part of a login, as authenticate() does it for a login it
        verified before: the token's last use and the throttle's record of a good login
        (each written at most once a minute, so no statement per request)."""
        principal = login.principal
        if principal.token is not None:
            self.svc.token_touch.touch(principal.token.id, ip)
        if principal.user is not None:
            self.svc.throttle.success(ip, principal.user.name)
