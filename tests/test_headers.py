"""teamindex.headers: Basic credentials, Accept and If-None-Match read without werkzeug, so
that the first request does not import it (issue 14, cold start).

werkzeug 3.1 is the reference: every answer is compared with its own, hand-picked cases
first, then seeded fuzz. For Accept and If-None-Match the fast functions may say UNSURE (the
caller then asks werkzeug), but never on the simple grammar real clients send."""

from __future__ import annotations

import base64
import random
import subprocess
import sys
import textwrap

import pytest
from werkzeug.datastructures import Authorization, MIMEAccept
from werkzeug.http import parse_accept_header, parse_etags

from teamindex.api.pagecache import CachedPage, page_reply
from teamindex.api.render import HTML_TYPE, JSON_TYPE, OFFERS, TEXT_HTML, best_content_type
from teamindex.headers import (
    UNSURE,
    basic_credentials,
    best_match,
    httpauth_credentials,
    weak_match,
)

# The Accept headers of real clients (PROTOCOL.md 3.2, observed on the wire).
PIP = f"{JSON_TYPE}, {HTML_TYPE}; q=0.1, text/html; q=0.01"
UV = f"{JSON_TYPE}, {HTML_TYPE};q=0.2, text/html;q=0.01"
POETRY = f"{JSON_TYPE}, */*;q=0.1"
PDM = PIP  # unearth sends pip's header
HATCH = "*/*"
CHROME = (
    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,"
    "image/apng,*/*;q=0.8"
)
FIREFOX = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
SEED = 20261127


def werkzeug_accept(accept: str, offers: tuple[str, ...] | list[str] = OFFERS) -> str | None:
    return parse_accept_header(accept, MIMEAccept).best_match(offers)


def werkzeug_credentials(authorization: str) -> tuple[str, str] | None:
    """What earlycheck.basic_credentials answered with werkzeug, except that werkzeug raises
    ValueError on non-ASCII base64 text, which is no credentials either."""
    try:
        parsed = Authorization.from_header(authorization)
    except ValueError:
        return None
    if parsed is None or parsed.type != "basic":
        return None
    username, password = parsed.username or "", parsed.password or ""
    return (username, password) if username and password else None


def b64(text: str | bytes) -> str:
    raw = text.encode() if isinstance(text, str) else text
    return base64.b64encode(raw).decode()


# --- Accept ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (PIP, JSON_TYPE),
        (UV, JSON_TYPE),
        (POETRY, JSON_TYPE),
        (PDM, JSON_TYPE),
        (HATCH, TEXT_HTML),  # hatch parses HTML
        (CHROME, TEXT_HTML),
        (FIREFOX, TEXT_HTML),
        ("text/*", TEXT_HTML),
        ("application/*", HTML_TYPE),
        (f"{JSON_TYPE};q=0.5, text/html;q=0.5", TEXT_HTML),  # a q tie: offer order decides
    ],
)
def test_real_clients_take_the_fast_path_to_the_documented_type(accept, expected) -> None:
    assert best_match(accept, OFFERS) == expected == werkzeug_accept(accept)
    assert best_content_type(accept) == expected


@pytest.mark.parametrize(
    "accept",
    [
        "",
        " ",
        ",",
        " , ,\t",
        "TEXT/HTML",
        "Text/Html;Q=0.5",
        "APPLICATION/VND.PYPI.SIMPLE.V1+JSON",
        "application/json",
        "image/png",
        "text/html;q=0",
        "*/*;q=0",
        "text/html;q=0, */*",
        "*/*;q=0.1, text/html;q=0",
        "application/*;q=0",
        f"text/html;q=0.5, {JSON_TYPE};q=0.5",
        f"{JSON_TYPE}, {JSON_TYPE};q=0",  # duplicates: the higher q counts
        f"{JSON_TYPE};q=0, {JSON_TYPE}",
        f"{JSON_TYPE};q=0.3, {JSON_TYPE};q=0.7, text/html;q=0.5",
        f"application/*;q=0.9, {JSON_TYPE};q=0.4",  # the most specific range wins for an offer
        f"*/*;q=0.9, {JSON_TYPE};q=0.4, text/*;q=0.3",
        "text/html ;  q=0.5, application/*;q=0.6",
        "text/html\t;\tq=0.5,\tapplication/*\t;q=0.4",
        f" \t{JSON_TYPE} , application/json\t",
        "text/html;q=1.000",
        "text/html;q=0.001, application/*;q=0.001",
        "text/html;Q=1, */*;q=1.0",
        "*/*;q=0.8,text/*;q=0.9",
    ],
)
def test_simple_headers_agree_with_werkzeug(accept) -> None:
    fast = best_match(accept, OFFERS)
    assert fast is not UNSURE
    assert fast == werkzeug_accept(accept)


@pytest.mark.parametrize(
    "accept",
    [
        "text/html;q=2",
        "text/html;q=abc",
        "text/html;q=0.1234",  # werkzeug takes it: left to it
        "text/html;q=-0",
        "text/html;q=1.",
        "text/html;q=.5",
        "text/html;q=",
        "text/html;q=1.5, */*;q=0.1",
        "text/html;level=1",
        'text/html;q="0.5"',
        '"text/html"',
        "text/html;charset=utf-8;q=0.5",
        "text/html;q=0.5;level=1",
        "text/html;q =0.5",
        "text/html;q= 0.5",
        "text/html;",
        "*/html",
        "text",
        "text/html/x",
        "text /html",
        "text/html\r",
        "t\u00e9xt/html, */*",
        "text/html q=0.5",
        "\\text/html",
        f"{JSON_TYPE}, text/html;level=1;q=0.9",
    ],
)
def test_other_headers_are_left_to_werkzeug(accept) -> None:
    assert best_match(accept, OFFERS) is UNSURE
    assert best_content_type(accept) == werkzeug_accept(accept)


def test_offers_must_be_concrete() -> None:
    assert best_match("*/*", ["text/*"]) is UNSURE
    assert best_match("*/*", ["html"]) is UNSURE
    assert best_match("*/*", ["text/html;level=1"]) is UNSURE
    assert best_match("*/*", ["text/plain", "text/html"]) == "text/plain"


ACCEPT_RANGES = [
    "*/*",
    "text/*",
    "application/*",
    "image/*",
    "text/html",
    "TEXT/html",
    JSON_TYPE,
    HTML_TYPE,
    "Application/Vnd.Pypi.Simple.V1+Json",
    "application/json",
    "application/xhtml+xml",
    "image/webp",
]
ACCEPT_Q = ["", ";q=0", ";q=1", ";q=0.5", "; q=0.01", " ;q=0.9", "\t;\tQ=0.100", ";q=1.000"]
ACCEPT_BAD_RANGES = ["*/html", "text", "text/html/x", "*", '"text/html"', "t\u00ebxt/html"]
ACCEPT_BAD_Q = [
    *(";q=2", ";q=abc", ";q=0.1234", ";q=-0", ";q=1.", ";q=.5", ";q=", ";q=1.5", ";q=01"),
    *(";level=1", ';q="0.5"', ";charset=utf-8;q=0.5", ";q=0.5;level=1", ";q =0.5", ";"),
]
LIST_SEPARATORS = [",", ", ", " ,", ",\t", ",,", " , ", "\t,  ", ", ,"]
JUNK = ['"', "\\", "\x00", "\u00e9", "\r", "\n", ";", "=", "/", "*", " ", ",", "\t", "q", "W"]
OFFER_POOL = [TEXT_HTML, HTML_TYPE, JSON_TYPE, "application/json", "image/webp", "TEXT/HTML"]


def _join(rng: random.Random, items: list[str]) -> str:
    text = items[0]
    for item in items[1:]:
        text += rng.choice(LIST_SEPARATORS) + item
    return rng.choice(["", " ", "\t"]) + text + rng.choice(["", " ", "\t", ","])


def _junked(rng: random.Random, text: str) -> str:
    for _ in range(rng.randint(1, 3)):
        at = rng.randint(0, len(text))
        text = text[:at] + rng.choice(JUNK) + text[at:]
    return text


def _offers(rng: random.Random) -> list[str]:
    return list(OFFERS) if rng.random() < 0.5 else rng.sample(OFFER_POOL, rng.randint(1, 4))


def simple_accept(rng: random.Random) -> str:
    items = [rng.choice(ACCEPT_RANGES) + rng.choice(ACCEPT_Q) for _ in range(rng.randint(1, 5))]
    return _join(rng, items)


def any_accept(rng: random.Random) -> str:
    """Half simple headers, half with odd items; either junked now and then."""
    items = [
        rng.choice(ACCEPT_RANGES if rng.random() < 0.8 else ACCEPT_BAD_RANGES)
        + rng.choice(ACCEPT_Q if rng.random() < 0.7 else ACCEPT_BAD_Q)
        for _ in range(rng.randint(1, 5))
    ]
    header = simple_accept(rng) if rng.random() < 0.5 else _join(rng, items)
    return _junked(rng, header) if rng.random() < 0.3 else header


def test_fuzz_accept_agrees_with_werkzeug_or_is_unsure() -> None:
    rng = random.Random(SEED)
    sure = 0
    for _ in range(6000):
        accept, offers = any_accept(rng), _offers(rng)
        fast = best_match(accept, offers)
        if fast is UNSURE:
            continue
        sure += 1
        assert fast == werkzeug_accept(accept, offers), (accept, offers)
    assert 1500 < sure < 4500, sure  # both branches were exercised


def test_fuzz_simple_accept_is_never_unsure() -> None:
    rng = random.Random(SEED + 1)
    for _ in range(4000):
        accept, offers = simple_accept(rng), _offers(rng)
        fast = best_match(accept, offers)
        assert fast is not UNSURE, accept
        assert fast == werkzeug_accept(accept, offers), (accept, offers)


# --- If-None-Match -----------------------------------------------------------------------

ETAG = "0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize(
    "if_none_match",
    [
        "*",
        "",
        f'"{ETAG}"',
        f'W/"{ETAG}"',
        f'w/"{ETAG}"',
        f'"other", W/"{ETAG}"',
        f'"other",W/"{ETAG}-gz"',
        '"other"',
        f'"{ETAG}x"',
        f' \t"other" ,\t"{ETAG}"  ',
        f'"other",, ,"{ETAG}"',
        f'"{ETAG}",',
        '""',
        'W/""',
        '"*"',
    ],
)
def test_simple_if_none_match_agrees_with_werkzeug(if_none_match) -> None:
    for etag in (ETAG, f"{ETAG}-gz", "other", "*", ""):
        fast = weak_match(if_none_match, etag)
        assert fast is not UNSURE
        assert fast == parse_etags(if_none_match).contains_weak(etag), (if_none_match, etag)


@pytest.mark.parametrize(
    ("if_none_match", "status"),
    [
        (ETAG, 304),  # unquoted: werkzeug takes it
        (f" {ETAG} ", 304),
        (f"W/{ETAG}", 304),
        (" *", 200),  # only a bare "*" is the star
        ("*, *", 200),
        (f'W/ "{ETAG}"', 200),
        (f'"{ETAG}', 200),
        (f'"{ETAG}"x', 200),
        (f'"a b", "{ETAG}"', 304),
        (f'"a,b", "{ETAG}"', 304),
        (f'"a\\"b", "{ETAG}"', 304),
        (f'"{ETAG}" "{ETAG}"', 200),
        (f'"\u00e9", "{ETAG}"', 304),
    ],
)
def test_other_if_none_match_is_left_to_werkzeug(if_none_match, status) -> None:
    page = CachedPage.build(b"x" * 10)
    header = if_none_match.replace(ETAG, page.etag)
    assert weak_match(header, page.etag) is UNSURE
    assert parse_etags(header).contains_weak(page.etag) == (status == 304)
    assert page_reply(page, TEXT_HTML, "", header).status == status


ETAG_TAGS = [ETAG, f"{ETAG}-gz", "other", "", "*", "a-b.c_d~", "x"]
ETAG_BAD_TAGS = ["a b", 'a"b', "a,b", "\u00e9", "a\\b"]
ETAG_FORMS = ['"{}"', 'W/"{}"', 'w/"{}"']
ETAG_BAD_FORMS = ["{}", 'W/ "{}"', '"{}', "W/{}", ' W"{}"', '"{}"x']


def simple_if_none_match(rng: random.Random) -> str:
    if rng.random() < 0.05:
        return "*"
    tags = [rng.choice(ETAG_FORMS).format(rng.choice(ETAG_TAGS)) for _ in range(rng.randint(1, 4))]
    return _join(rng, tags)


def any_if_none_match(rng: random.Random) -> str:
    if rng.random() < 0.05:
        return rng.choice(["*", " *", "* ", "W/*", "*,*"])
    tags = [
        rng.choice(ETAG_FORMS if rng.random() < 0.8 else ETAG_BAD_FORMS).format(
            rng.choice(ETAG_TAGS if rng.random() < 0.8 else ETAG_BAD_TAGS)
        )
        for _ in range(rng.randint(1, 4))
    ]
    header = simple_if_none_match(rng) if rng.random() < 0.5 else _join(rng, tags)
    return _junked(rng, header) if rng.random() < 0.3 else header


def test_fuzz_if_none_match_agrees_with_werkzeug_or_is_unsure() -> None:
    rng = random.Random(SEED + 2)
    sure = 0
    for _ in range(5000):
        header, etag = any_if_none_match(rng), rng.choice(ETAG_TAGS)
        fast = weak_match(header, etag)
        if fast is UNSURE:
            continue
        sure += 1
        assert fast == parse_etags(header).contains_weak(etag), (header, etag)
    assert 1500 < sure < 4000, sure


def test_fuzz_simple_if_none_match_is_never_unsure() -> None:
    rng = random.Random(SEED + 3)
    matched = 0
    for _ in range(3000):
        header, etag = simple_if_none_match(rng), rng.choice(ETAG_TAGS)
        fast = weak_match(header, etag)
        assert fast is not UNSURE, header
        assert fast == parse_etags(header).contains_weak(etag), (header, etag)
        matched += fast
    assert 300 < matched < 2700


# --- Basic credentials ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("authorization", "expected"),
    [
        ("Basic " + b64("alice:secret"), ("alice", "secret")),
        ("basic " + b64("alice:secret"), ("alice", "secret")),
        ("BASIC  " + b64("alice:secret") + " \t", ("alice", "secret")),
        ("Basic " + b64("__token__:tix_a:b"), ("__token__", "tix_a:b")),  # the first ":"
        ("Basic " + b64("\u00e9:\u00fc\u65e5"), ("\u00e9", "\u00fc\u65e5")),
        ("Basic " + b64("alice"), None),
        ("Basic " + b64("alice:"), None),
        ("Basic " + b64(":secret"), None),
        ("Basic " + b64(":"), None),
        ("Basic " + b64("\u00e9:pw".encode("latin-1")), None),  # not UTF-8
        ("Basic " + b64("alice:secret1").rstrip("="), None),  # padding is required
        ("Basic " + b64("alice:secret") + "!", None),
        ("Basic\t" + b64("alice:secret"), None),  # the scheme ends at a space
        ("Basic \u00e9", None),  # werkzeug raises here
        ("Basic " + b64("alice:secret") + "\u00e9", None),
        ("Bearer " + b64("alice:secret"), None),
        ("Digest username=alice", None),
        ("Basic", None),
        ("Basic ", None),
        ("", None),
    ],
)
def test_basic_credentials_as_werkzeug_reads_them(authorization, expected) -> None:
    assert basic_credentials(authorization) == expected == werkzeug_credentials(authorization)


CREDENTIAL_PARTS = [
    "alice",
    "__token__",
    "tix_abc",
    "",
    ":",
    "\u00e9",
    "\u65e5\u672c",
    "a b",
    "\x00",
]
SCHEMES = ["Basic", "Basic", "basic", "BASIC", "bAsIc", "Bearer", "Digest", "", "Basic\t", "Basicx"]
SCHEME_SEPARATORS = [" ", " ", "  ", " \t", "\t", "", " \t "]


def _payload(rng: random.Random) -> str:
    kind = rng.random()
    if kind < 0.4:
        user, password = ("".join(rng.sample(CREDENTIAL_PARTS, rng.randint(0, 2))) for _ in "up")
        encoded = b64(f"{user}:{password}")
    elif kind < 0.6:
        encoded = b64("".join(rng.choice(CREDENTIAL_PARTS) for _ in range(rng.randint(0, 5))))
    elif kind < 0.75:
        encoded = b64(rng.randbytes(rng.randint(0, 24)))
    else:
        encoded = b64("alice:secret1" if rng.random() < 0.5 else "\u00e9:pw".encode("latin-1"))
    if rng.random() < 0.3:
        encoded = _junked(rng, encoded) if rng.random() < 0.5 else encoded.rstrip("=")
    return encoded + rng.choice(["", "", " ", "\t", " \t", "\r"])


def flask_httpauth_credentials(authorization: str) -> tuple[str, str] | None:
    """What flask-httpauth's HTTPBasicAuth passes to our verify callback (None: no
    credentials, it passes "" and ""), for a request with this header."""
    from flask import Flask
    from flask_httpauth import HTTPBasicAuth

    app = Flask("headers-test")
    with app.test_request_context(environ_overrides={"HTTP_AUTHORIZATION": authorization}):
        auth = HTTPBasicAuth().get_auth()
    return None if auth is None else (auth.username, auth.password)


@pytest.mark.parametrize(
    "authorization",
    [
        "Basic " + b64("alice:secret"),
        "Bearer " + b64("alice:secret"),  # flask-httpauth reads any scheme word
        "Basic " + b64("alice:"),
        "Basic " + b64(":"),
        "Basic " + b64("\u00e9:pw".encode("latin-1")),  # not UTF-8: Latin-1
        "Basic " + b64("alice:secret") + "!",  # lenient base64
        "Basic\t" + b64("alice:secret"),
        "Basic",
        "",
    ],
)
def test_httpauth_credentials_as_flask_httpauth_reads_them(authorization) -> None:
    assert httpauth_credentials(authorization) == flask_httpauth_credentials(authorization)


@pytest.mark.parametrize(
    ("ours", "reference", "seed"),
    [
        (basic_credentials, werkzeug_credentials, SEED + 4),
        # The hot path verifies a new login with these words (api/hotpath.py): they must be
        # the ones Flask's login_required passes, or the two paths would check different logins.
        (httpauth_credentials, flask_httpauth_credentials, SEED + 5),
    ],
)
def test_fuzz_basic_credentials_agree_with_the_reader_they_mirror(ours, reference, seed) -> None:
    rng = random.Random(seed)
    found = 0
    for _ in range(3000):
        header = rng.choice(SCHEMES) + rng.choice(SCHEME_SEPARATORS) + _payload(rng)
        parsed = ours(header)
        assert parsed == reference(header), header
        found += parsed is not None
    assert 150 < found < 2900, found


# --- The first request's path imports no werkzeug -----------------------------------------

NO_WERKZEUG = textwrap.dedent(
    f"""
    import sys

    import teamindex.access.auth
    import teamindex.access.earlycheck
    import teamindex.api.pagecache
    import teamindex.api.render


    def loaded():
        return sorted(m for m in sys.modules if m == "werkzeug" or m.startswith("werkzeug."))


    assert not loaded(), loaded()
    from teamindex.access.auth import looks_like_token, token_digest
    from teamindex.access.earlycheck import basic_credentials
    from teamindex.api.pagecache import CachedPage, page_reply
    from teamindex.api.render import JSON_TYPE, best_content_type

    assert best_content_type({PIP!r}) == JSON_TYPE
    page = CachedPage.build(b"x" * 2000)
    assert page_reply(page, "text/html", "gzip", f'"other", W/"{{page.etag}}-gz"').status == 304
    assert page_reply(page, "text/html", "gzip", '"other"').status == 200
    assert basic_credentials("Basic {b64("__token__:tix_abc")}") == ("__token__", "tix_abc")
    assert looks_like_token("tix_abc") and token_digest("tix_abc")
    assert not loaded(), loaded()
    # A header outside the simple grammar still gets werkzeug's answer.
    assert best_content_type("text/html;q=0.1234") == "text/html"
    assert loaded()
    print("ok")
    """
)


def test_the_first_request_path_imports_no_werkzeug() -> None:
    done = subprocess.run(
        [sys.executable, "-c", NO_WERKZEUG], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "ok\n"
