"""The login throttle's counters, blocks and known addresses (migration 0006).

Writes are best effort: a failed login must never turn into a 500 or hold a worker for the
full busy timeout because another process holds the write lock, so they wait briefly and
give up (the caller logs it). Each failure is one upsert statement for all its keys.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from ..models import ThrottleEntry, ThrottleState
from .core import Conn, Connections

# How long a throttle write waits for another writer before it is skipped.
BRIEF_WAIT_MS = 1_000

# One failure for the address key and the user key (each unless NULL). The count after
# it is the old count plus one inside the window, else a fresh 1; reaching the key's limit
# when not blocked already blocks it until :now + :cooldown and starts counting anew (0).
_COUNT_FAILURE = """
INSERT INTO throttle AS t (kind, subject, window_start, failures, max_failures, blocked_until)
SELECT column1, column2, :now, CASE WHEN column3 <= 1 THEN 0 ELSE 1 END, column3,
       CASE WHEN column3 <= 1 THEN :now + :cooldown ELSE 0 END
FROM (VALUES ('address', :address, :address_limit), ('user', :user, :user_limit)) AS v
WHERE column2 IS NOT NULL
ON CONFLICT (kind, subject) DO UPDATE SET
    blocked_until = CASE
        WHEN t.blocked_until <= :now AND excluded.max_failures <=
             CASE WHEN t.window_start > :now - :window THEN t.failures + 1 ELSE 1 END
        THEN :now + :cooldown ELSE t.blocked_until END,
    failures = CASE
        WHEN t.blocked_until <= :now AND excluded.max_failures <=
             CASE WHEN t.window_start > :now - :window THEN t.failures + 1 ELSE 1 END
        THEN 0
        ELSE CASE WHEN t.window_start > :now - :window THEN t.failures + 1 ELSE 1 END END,
    window_start = CASE
        WHEN t.window_start <= :now - :window THEN :now  -- the window is over: a new one
        WHEN t.blocked_until <= :now AND excluded.max_failures <= t.failures + 1 THEN :now
        ELSE t.window_start END,
    max_failures = excluded.max_failures
RETURNING kind, subject, failures = 0
"""


class ThrottleQueries(Connections):
    @contextmanager
    def _brief_wait(self) -> Iterator[Conn]:
        with self.waiting(BRIEF_WAIT_MS):
            yield self.conn

    def throttle_state(self, address: str, user: str | None) -> ThrottleState:
        """Blocks on the address key and the user key, and the user's last login from this
        address, in one statement (run only for logins not verified before)."""
        row = self.conn.execute(
            "SELECT coalesce((SELECT blocked_until FROM throttle"
            " WHERE kind = 'address' AND subject = :address), 0),"
            " coalesce((SELECT blocked_until FROM throttle"
            " WHERE kind = 'user' AND subject = :user), 0),"
            ' (SELECT seen FROM known_addresses WHERE "user" = :user AND address = :address)',
            {"address": address, "user": user},
        ).fetchone()
        return ThrottleState(row[0], row[1], row[2])

    def add_throttle_failures(
        self,
        address: str | None,
        address_limit: int,
        user: str | None,
        user_limit: int,
        *,
        now: float,
        window: float,
        cooldown: float,
    ) -> list[tuple[str, str]]:
        """Count one failure for the address and the user (each unless None) in one
        statement; the (kind, subject) keys it just blocked."""
        params = {
            "address": address,
            "address_limit": address_limit,
            "user": user,
            "user_limit": user_limit,
            "now": now,
            "window": window,
            "cooldown": cooldown,
        }
        with self._brief_wait() as conn:
            rows = conn.execute(_COUNT_FAILURE, params).fetchall()
        return [(row[0], row[1]) for row in rows if row[2]]

    def add_known_address(self, user: str, address: str, now: float) -> None:
        """Remember that `user` logged in from `address` (the throttle's address key)."""
        with self._brief_wait() as conn:
            conn.execute(
                'INSERT INTO known_addresses ("user", address, seen) VALUES (?, ?, ?)'
                ' ON CONFLICT ("user", address) DO UPDATE SET seen = excluded.seen',
                (user, address, now),
            )

    def prune_throttle(self, *, now: float, window: float, known_for: float) -> int:
        """Forget keys whose window and block are over, and old known addresses."""
        with self._brief_wait(), self.transaction() as conn:
            cursor = conn.execute(
                "DELETE FROM throttle WHERE blocked_until <= ? AND window_start <= ?",
                (now, now - window),
            )
            conn.execute("DELETE FROM known_addresses WHERE seen <= ?", (now - known_for,))
        return cursor.rowcount

    def throttle_entries(self, *, now: float, window: float) -> list[ThrottleEntry]:
        """Keys that are blocked or have failures in the current window, blocks first."""
        rows = self.conn.execute(
            "SELECT kind, subject, failures, max_failures, window_start, blocked_until"
            " FROM throttle WHERE blocked_until > :now OR window_start > :now - :window"
            " ORDER BY blocked_until > :now DESC, kind, subject",
            {"now": now, "window": window},
        ).fetchall()
        return [ThrottleEntry(*row) for row in rows]

    def clear_throttle(self, kind: str | None = None, subject: str | None = None) -> int:
        """Delete the counters and blocks of one key, of every key of a kind, or of all
        (kind None); the number of keys deleted. Known addresses stay."""
        with self.transaction() as conn:
            cursor = conn.execute(
                "DELETE FROM throttle WHERE (:kind IS NULL OR kind = :kind)"
                " AND (:subject IS NULL OR subject = :subject)",
                {"kind": kind, "subject": subject},
            )
        return cursor.rowcount
