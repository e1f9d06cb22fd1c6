"""Cold start (issue 14): `serve` imports only what serving needs.

Checked in a fresh interpreter, since this test process has imported everything already.
Each name below cost a measurable share of the ~0.3 s from spawn to the first 200.
"""

from __future__ import annotations

import json
import subprocess
import sys

from flask import Flask

SERVE_IMPORTS = """
import json, sys
from teamindex import cli
parser = cli.build_parser(["serve", "--port", "0"])
parser.parse_args(["serve", "--port", "0"])
import teamindex.app, teamindex.ops.serving
print(json.dumps(sorted(sys.modules)))
"""

# Never needed to serve without --upstream: the other commands' modules (backup, integrity,
# removal, nginx-config) and the upstream proxy's HTTP client.
NOT_AT_START = (
    "teamindex.cli.access",
    "teamindex.cli.docs",
    "teamindex.cli.ops",
    "teamindex.cli.throttle",
    "teamindex.cli.upstream",
    "teamindex.index.backup",
    "teamindex.index.integrity",
    "urllib3",
)


def _modules(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    return set(json.loads(out.stdout))


def test_serve_does_not_import_what_serving_never_needs() -> None:
    loaded = _modules(SERVE_IMPORTS)
    assert "teamindex.app" in loaded
    assert sorted(loaded & set(NOT_AT_START)) == []


def test_other_commands_and_help_still_see_every_command() -> None:
    code = (
        "import json, sys\nfrom teamindex import cli\n"
        "names = set()\n"
        "for argv in (['token', 'list'], ['--help'], []):\n"
        "    p = cli.build_parser(argv)\n"
        "    names |= set(p._subparsers._group_actions[0].choices)\n"
        "print(json.dumps(sorted(names)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    names = set(json.loads(out.stdout))
    assert {"serve", "token", "grant", "backup", "check", "upload-docs", "cache"} <= names


def test_the_upstream_client_still_works_when_imported_lazily() -> None:
    code = (
        "from teamindex.upstream.client import UpstreamClient, _failure\n"
        "import urllib3\n"
        "c = UpstreamClient('http://u:p@127.0.0.1:9/simple/')\n"
        "assert c._auth['authorization'].startswith('Basic ')\n"
        "assert _failure(urllib3.exceptions.ReadTimeoutError(None, '', '')).status == 504\n"
        "print('[]')\n"
    )
    _modules(code)


def test_serve_does_not_load_pyjwt_until_an_oidc_exchange() -> None:
    loaded = _modules(SERVE_IMPORTS)
    assert sorted(m for m in loaded if m.split(".")[0] in ("jwt", "cryptography")) == []
    after = _modules(
        "import json, sys\nfrom teamindex.access.oidc.exchange import exchange\n"
        "from teamindex.access.oidc.exchange import ExchangeError\n"
        "try:\n    exchange(None, None, 'aud', 'not-a-jwt')\n"
        "except ExchangeError as exc:\n    assert exc.code == 'invalid-token', exc.code\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    assert "jwt" in after


def _sample(converter: object) -> object:
    """A value every converter of ours accepts."""
    from werkzeug.routing import IntegerConverter

    return 3 if isinstance(converter, IntegerConverter) else "a-b_c"


def test_url_rules_compile_their_builders_on_first_use_and_build_as_werkzeug_does(
    app: Flask,
) -> None:
    """create_app compiles no url_for() builder (two thirds of its cold-start time); the
    first build of each rule compiles it and gives werkzeug's own URL."""
    from werkzeug.routing import Map, Rule

    from teamindex.app import LazyBuilderRule

    ours = [r for r in app.url_map.iter_rules() if isinstance(r, LazyBuilderRule)]
    assert len(ours) > 40  # every route but Flask's /static/
    assert all(r._build_unknown.__name__ == "build" for r in ours)  # lazy stubs, not compiled
    assert all(r._build.__name__ == "build" for r in ours)
    plain = Map([Rule(r.rule, **r.get_empty_kwargs()) for r in ours])
    theirs = plain.bind("index.test", "/")
    mine = app.url_map.bind("index.test", "/")
    for rule in ours:
        values = {name: _sample(conv) for name, conv in rule._converters.items()}
        for extra in ({}, {"page": "2"}):  # unknown values go to the query string
            want = theirs.build(rule.endpoint, {**values, **extra}, method=sorted(rule.methods)[0])
            got = mine.build(rule.endpoint, {**values, **extra}, method=sorted(rule.methods)[0])
            assert got == want, rule.rule
    # url_for() appends unknown values: that builder was compiled once, and is kept (for
    # each endpoint the rule werkzeug builds with; an endpoint's other rules stay lazy).
    compiled = {r.endpoint for r in ours if r._build_unknown.__name__.startswith("<builder")}
    assert compiled == {r.endpoint for r in ours}
