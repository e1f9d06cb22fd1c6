"""Timestamps as the index stores and serves them: UTC, microseconds, a literal Z.

One format everywhere (PEP 700 `upload-time`, audit rows, token expiry and use), so stored
values compare correctly as strings.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def utc_stamp(moment: datetime | None = None) -> str:
    """`moment` (default: now) in the index's timestamp format."""
    moment = moment or datetime.now(timezone.utc)
    return moment.astimezone(timezone.utc).strftime(FORMAT)


def utc_now() -> str:
    return utc_stamp()


_UNITS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_moment(text: str, now: datetime, *, future: bool) -> datetime | None:
    """'90d', '12h', '30m', '2w' (from `now`, forwards or backwards) or an ISO date/datetime
    (UTC when no offset is given); None when `text` is neither."""
    value = text.strip().lower()
    if value[:-1].isdigit() and value[-1:] in _UNITS:
        span = timedelta(seconds=int(value[:-1]) * _UNITS[value[-1]])
        return now + span if future else now - span
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)
