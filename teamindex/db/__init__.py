"""The only package with SQL: `Database` joins one query mixin per area.

Every query of the application is a method of Database; sqlite3.Row never leaves the package
(rows.py turns rows into the frozen records of teamindex.models).
"""

from __future__ import annotations

from .access import AccessQueries
from .core import (
    BUSY_TIMEOUT_MS,
    REQUEST_BUSY_TIMEOUT_MS,
    Busy,
    Conflict,
    Connections,
    InvalidText,
    database_errors,
    integrity_errors,
)
from .index import IndexQueries
from .oidc import OidcQueries
from .operations import OperationQueries
from .throttle import ThrottleQueries
from .upstream import UpstreamQueries
from .users import UserQueries
from .web import WebQueries

__all__ = [
    "BUSY_TIMEOUT_MS",
    "REQUEST_BUSY_TIMEOUT_MS",
    "Busy",
    "Conflict",
    "Connections",
    "Database",
    "InvalidText",
    "database_errors",
    "integrity_errors",
]


class Database(
    UserQueries,
    AccessQueries,
    IndexQueries,
    OperationQueries,
    WebQueries,
    ThrottleQueries,
    UpstreamQueries,
    OidcQueries,
):
    """Access to one database (SQLite or PostgreSQL); every query of the application is a
    method here."""
