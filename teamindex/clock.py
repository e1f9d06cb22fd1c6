"""Timestamps as the index stores and serves them: UTC, microseconds, a literal Z.

One format everywhere (PEP 700 `upload-time`, audit rows, token expiry and use), so stored
values compare correctly as strings.
"""

from __future__ import annotations

from datetime import datetime, timezone

FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def utc_stamp(moment: datetime | None = None) -> str:
    """`moment` (default: now) in the index's timestamp format."""
    moment = moment or datetime.now(timezone.utc)
    return moment.astimezone(timezone.utc).strftime(FORMAT)


def utc_now() -> str:
    return utc_stamp()
