"""Basic credentials, Accept and If-None-Match read without werkzeug (issue 14, cold start).

The first /simple/ request is answered by the hot path before Flask is imported, and any
`import werkzeug.<x>` first runs werkzeug/__init__.py (serving, test, http.server, email:
~45 ms of a 0.25 s budget). Those three headers are all that request parses, so they are
parsed here, giving exactly werkzeug 3.1's answers:

- basic_credentials mirrors `Authorization.from_header` (a few lines of stdlib), and
  httpauth_credentials flask-httpauth's own, more lenient reading (HTTPBasicAuth.get_auth):
  the hot path verifies a new login with the very words Flask's login_required would.
- best_match and weak_match cover the simple grammar real clients send (PROTOCOL.md 3.2:
  pip, uv, poetry, pdm, hatch, browsers; RFC 9110 13.1.2 entity tags) and return UNSURE for
  anything else, so the caller asks werkzeug, imported only then. werkzeug stays the
  reference: tests/test_headers.py compares both, case by case and by seeded fuzz.
"""

from __future__ import annotations

import base64
import binascii
import enum
import re
from collections.abc import Sequence
from typing import Literal


class Unsure(enum.Enum):
    """The answer for a header outside the simple grammar: ask werkzeug."""

    UNSURE = "unsure"


UNSURE: Literal[Unsure.UNSURE] = Unsure.UNSURE

# A type or subtype: RFC 9110 5.6.2 token characters without "*": a range is "*/*", "type/*" or
# "type/subtype"; werkzeug ignores "*/subtype" and "*" inside a token is too rare to mirror.
_NAME = r"[!#$%&'+.^_`|~0-9A-Za-z-]+"
# One Accept item after werkzeug's strip(" \t"): a media range with at most a q parameter,
# whose value RFC 9110 12.4.2 allows (a subset of what werkzeug accepts: -?\d+(\.\d+)?, 0..1).
_ACCEPT_ITEM = re.compile(
    rf"(\*|{_NAME})/(\*|{_NAME})(?:[ \t]*;[ \t]*[qQ]=(0(?:\.[0-9]{{1,3}})?|1(?:\.0{{1,3}})?))?"
)
_OFFER = re.compile(rf"{_NAME}/{_NAME}")
# RFC 9110 8.8.3 entity-tag, its opaque part narrowed to visible ASCII without "\" and ",".
_ENTITY_TAG = re.compile(r'(?:[Ww]/)?"([!#-+\--\[\]-~]*)"')

# (type, subtype, q, specificity) of an Accept item, lowercased: specificity counts the
# parts that are not "*", which orders as werkzeug's tuple of booleans does.
_Range = tuple[str, str, float, int]


def basic_credentials(authorization: str) -> tuple[str, str] | None:
    """(user, password) of a Basic header as werkzeug's Authorization.from_header reads it
    (the early gate's reading: flask-httpauth reads more leniently, httpauth_credentials),
    or None when it is none, or has no user or no password (nothing that could log in).

    One difference: werkzeug raises ValueError on non-ASCII base64 text; that is no
    credentials either, so None."""
    scheme, _, rest = authorization.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(rest.strip(" \t"), validate=True).decode()
    except ValueError:  # binascii.Error, UnicodeDecodeError, non-ASCII text
        return None
    username, _, password = decoded.partition(":")
    if not username or not password:
        return None
    return username, password


def httpauth_credentials(authorization: str) -> tuple[str, str] | None:
    """(user, password) as flask-httpauth's HTTPBasicAuth.get_auth reads the header: any
    scheme word, lenient base64, UTF-8 else Latin-1; None where it sees no credentials."""
    value = authorization.encode("utf-8")
    try:
        _scheme, credentials = value.split(b" ", 1)
        encoded_user, encoded_password = base64.b64decode(credentials).split(b":", 1)
    except (ValueError, TypeError, binascii.Error):
        return None
    try:
        return encoded_user.decode("utf-8"), encoded_password.decode("utf-8")
    except UnicodeDecodeError:
        return encoded_user.decode("latin1"), encoded_password.decode("latin1")


def best_match(accept: str, offers: Sequence[str]) -> str | Literal[Unsure.UNSURE] | None:
    """The offer werkzeug's `parse_accept_header(accept, MIMEAccept).best_match(offers)`
    picks (None: nothing acceptable), or UNSURE when the header is outside the simple
    grammar. Offers must be concrete `type/subtype`, else UNSURE as well."""
    ranges = _accept_ranges(accept)
    if ranges is None or not all(_OFFER.fullmatch(offer) for offer in offers):
        return UNSURE
    result: str | None = None
    best_quality, best_specificity = -1.0, -1
    for offer in offers:
        match = _best_range(ranges, *offer.lower().split("/"))
        if match is None:
            continue
        quality, specificity = match
        # werkzeug's rule: a better q wins; an equal q wins only when more specific, so
        # the first offer wins a tie (hence HTML for "*/*", as on PyPI).
        if quality <= 0 or quality < best_quality:
            continue
        if quality > best_quality or specificity > best_specificity:
            result, best_quality, best_specificity = offer, quality, specificity
    return result


def _accept_ranges(accept: str) -> list[_Range] | None:
    """The items of a simple Accept header, or None when an item is outside the grammar.
    werkzeug splits on commas, strips spaces and tabs and drops empty items."""
    ranges = []
    for raw in accept.split(","):
        item = raw.strip(" \t")
        if not item:
            continue
        found = _ACCEPT_ITEM.fullmatch(item)
        if found is None:
            return None
        kind, subtype, quality = found.groups()
        if kind == "*" and subtype != "*":
            return None
        specificity = (kind != "*") + (subtype != "*")
        ranges.append((kind.lower(), subtype.lower(), float(quality or 1), specificity))
    return ranges


def _best_range(ranges: list[_Range], kind: str, subtype: str) -> tuple[float, int] | None:
    """(q, specificity) of the item werkzeug matches an offer with: its list is sorted by
    (specificity, q), descending, and the first item that covers the offer counts."""
    matching = [
        (quality, specificity)
        for item_kind, item_subtype, quality, specificity in ranges
        if item_kind == "*" or (item_kind == kind and item_subtype in ("*", subtype))
    ]
    return max(matching, key=lambda match: (match[1], match[0]), default=None)


def weak_match(if_none_match: str, etag: str) -> bool | Literal[Unsure.UNSURE]:
    """werkzeug's `parse_etags(if_none_match).contains_weak(etag)` (RFC 9110 13.1.2: weak
    comparison), or UNSURE when the header is outside the simple grammar: "*", or a comma
    list of "tag" and W/"tag"."""
    if if_none_match == "*":
        return True
    tags = set()
    for raw in if_none_match.split(","):
        item = raw.strip(" \t")
        if not item:
            continue  # werkzeug skips empty items too
        found = _ENTITY_TAG.fullmatch(item)
        if found is None:
            return UNSURE
        if found.group(1):  # werkzeug reads "" as no tag at all (None): it matches nothing
            tags.add(found.group(1))
    return etag in tags
