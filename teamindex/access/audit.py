"""The audit log: one row per security-relevant event, downloads counted per file per day.

Secrets never reach this module: callers pass user names and token ids, never passwords or
token secrets. Downloads are summed in memory and written at most every FLUSH_SECONDS, so
serving a file never waits on a database write. With `serve --audit-downloads` each download
also becomes an audit row (who, which token, from where), queued the same way and written in
one batch per flush.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from datetime import datetime

from ..clock import parse_moment, utc_stamp
from ..db import Database
from ..models import AuditEvent
from .permissions import Principal

log = logging.getLogger("teamindex")

FLUSH_SECONDS = 10.0
# Download records waiting while another writer holds the database; past this many the
# oldest are dropped (and the drop logged) rather than memory growing without end.
MAX_PENDING_RECORDS = 100_000
# Actions written by the index and the CLI (documented in the README's audit section).
ACTIONS = (
    "auth_failed",
    "throttled",
    "ip_denied",
    "upload",
    "download",
    "yank",
    "unyank",
    "delete",
    "user_add",
    "user_delete",
    "password_change",
    "token_create",
    "token_revoke",
    "token_rotate",
    "grant",
    "revoke",
    "project_create",
    "project_set",
    "allow_add",
    "allow_remove",
    "user_admin",  # web: administrator rights given or taken
    "docs_upload",
    "throttle_clear",  # CLI or web: failed-login counts and blocks cleared
    "protect_add",  # upstream proxy: a protected name pattern added / removed
    "protect_remove",
    "cache_prune",  # upstream proxy: cached upstream files removed
)


def parse_since(text: str, now: datetime) -> str:
    """'7d', '12h', '30m' or an ISO date -> the UTC timestamp to list events from."""
    moment = parse_moment(text, now, future=False)
    if moment is None:
        raise ValueError(f"--since takes 7d, 12h or a date, not {text!r}")
    return utc_stamp(moment)


class AuditLog:
    """Writes events to the database and batches download counts."""

    def __init__(self, db: Database, *, record_downloads: bool = False) -> None:
        self.db = db
        self.record_downloads = record_downloads
        self._downloads: Counter[tuple[str, str]] = Counter()
        self._records: list[AuditEvent] = []
        self._day = ""
        self._last_flush = time.monotonic()
        self._lock = threading.Lock()

    def record(
        self,
        action: str,
        *,
        ip: str = "",
        user: str = "",
        token_id: int | None = None,
        project: str = "",
        filename: str = "",
        outcome: str = "ok",
        detail: str = "",
        best_effort: bool = False,
    ) -> None:
        """Write one event. `best_effort` is for refusals (a failed login, a denied
        address): their answer must not wait for, or fail on, a database another writer
        holds, so the row is skipped then (and the skip logged)."""
        event = AuditEvent(
            utc_stamp(), ip, user, token_id, action, project, filename, outcome, detail
        )
        if not best_effort:
            self.db.add_audit(event)
            return
        with self.db.skippable("audit rows of refused requests"):
            self.db.add_audit(event)

    def download(
        self,
        project: str,
        filename: str,
        *,
        user: str = "",
        token_id: int | None = None,
        ip: str = "",
    ) -> None:
        """Count a download, and with `record_downloads` queue its audit row too; flushes
        the batch when the day changes or it is old enough. Off, this costs no statement."""
        now = utc_stamp()
        day = now[:10]
        with self._lock:
            if day != self._day and self._downloads:
                self._flush_locked()
            self._day = day
            self._downloads[(project, filename)] += 1
            if self.record_downloads:
                self._records.append(
                    AuditEvent(now, ip, user, token_id, "download", project, filename, "ok", "")
                )
            due = time.monotonic() - self._last_flush >= FLUSH_SECONDS
        if due:
            self.flush()

    def served(self, project: str, filename: str, reader: Principal, ip: str) -> None:
        """A distribution file was sent (200): hosted or a cached upstream one, by Flask or
        the hot path. The one place every download is counted, and with `--audit-downloads`
        recorded with who, which token and from where."""
        self.download(
            project,
            filename,
            user=reader.name,
            token_id=reader.token.id if reader.token else None,
            ip=ip,
        )

    def flush(self) -> None:
        with self._lock:
            self._flush_locked()

    def _flush_locked(self) -> None:
        if self._downloads:
            # While another writer holds the lock the counts stay here for the next flush:
            # a download never waits for them.
            with self.db.skippable("download counts (kept for the next flush)"):
                self.db.add_download_counts(self._day, dict(self._downloads))
                self._downloads.clear()
        if self._records:
            with self.db.skippable("download audit rows (kept for the next flush)"):
                self.db.add_audits(self._records)
                self._records.clear()
            if len(self._records) > MAX_PENDING_RECORDS:
                dropped = len(self._records) - MAX_PENDING_RECORDS
                del self._records[:dropped]
                log.warning("dropped %d download audit rows: the database stayed busy", dropped)
        self._last_flush = time.monotonic()
