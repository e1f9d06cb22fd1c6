"""Cold start (issue 14): `serve` imports only what serving needs.

Checked in a fresh interpreter, since this test process has imported everything already.
Each name below cost a measurable share of the ~0.3 s from spawn to the first 200.
"""

from __future__ import annotations

import json
import subprocess
import sys

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
