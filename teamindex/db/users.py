"""Users: accounts and password hashes; the one-statement logins."""

from __future__ import annotations

from ..models import (
    LoginFacts,
    User,
)
from .core import Conflict, Connections, integrity_errors
from .rows import (
    allowlists_from,
    token_from,
    user_from,
)


class UserQueries(Connections):
    def get_user(self, name: str) -> User | None:
        row = self.conn.execute(
            "SELECT id, name, password_hash, is_admin FROM users WHERE name = ?", (name,)
        ).fetchone()
        return user_from(row) if row else None

    def password_login(self, name: str) -> LoginFacts:
        """The user named `name` (if any), the allowlists and the auth serial they were read
        at, in one statement: every authenticated request that misses the login cache runs
        it, and each statement is a GIL round trip."""
        row = self.conn.execute(
            "SELECT u.id, u.name, u.password_hash, u.is_admin,"
            " (SELECT group_concat(cidr, ' ') FROM allowlist WHERE user_id IS NULL)"
            " AS global_cidrs,"
            " (SELECT group_concat(cidr, ' ') FROM allowlist WHERE user_id = u.id) AS user_cidrs,"
            " s.auth_serial FROM state s LEFT JOIN users u ON u.name = ? WHERE s.id = 1",
            (name,),
        ).fetchone()
        user = user_from(row) if row["id"] is not None else None
        return LoginFacts(user, None, *allowlists_from(row), row["auth_serial"])

    def token_login(self, digest: str) -> LoginFacts:
        """The token with this digest, its owner, the allowlists and the auth serial."""
        row = self.conn.execute(
            "SELECT t.id AS token_id, t.user_id, t.scope, t.projects, t.allow_ips, t.note,"
            " t.created, t.expires, t.revoked, t.last_used, t.last_ip, u.name AS user_name,"
            " u.id, u.name, u.password_hash, u.is_admin,"
            " (SELECT group_concat(cidr, ' ') FROM allowlist WHERE user_id IS NULL)"
            " AS global_cidrs,"
            " (SELECT group_concat(cidr, ' ') FROM allowlist WHERE user_id = u.id) AS user_cidrs,"
            " s.auth_serial FROM state s LEFT JOIN tokens t ON t.digest = ?"
            " LEFT JOIN users u ON u.id = t.user_id WHERE s.id = 1",
            (digest,),
        ).fetchone()
        if row["token_id"] is None or row["id"] is None:
            return LoginFacts(None, None, *allowlists_from(row), row["auth_serial"])
        token = token_from(row, id_column="token_id")
        return LoginFacts(user_from(row), token, *allowlists_from(row), row["auth_serial"])

    def token_standing(self, digest: str) -> tuple[str | None, str | None] | None:
        """(revoked, expires) of the token with this digest whose owner exists, or None:
        one indexed read, for the server's check on a request's headers (BodyGate)."""
        row = self.conn.execute(
            "SELECT t.revoked, t.expires FROM tokens t JOIN users u ON u.id = t.user_id"
            " WHERE t.digest = ?",
            (digest,),
        ).fetchone()
        return (row[0], row[1]) if row else None

    def get_user_by_id(self, user_id: int) -> User | None:
        row = self.conn.execute(
            "SELECT id, name, password_hash, is_admin FROM users WHERE id = ?", (user_id,)
        ).fetchone()
        return user_from(row) if row else None

    def list_users(self) -> list[User]:
        rows = self.conn.execute(
            "SELECT id, name, password_hash, is_admin FROM users ORDER BY name"
        ).fetchall()
        return [user_from(row) for row in rows]

    def count_users(self) -> int:
        return self.conn.execute("SELECT count(*) FROM users").fetchone()[0]

    def add_user(self, name: str, password_hash: str, *, is_admin: bool, now: str) -> User:
        try:
            with self.transaction() as conn:
                cursor = conn.execute(
                    "INSERT INTO users (name, password_hash, is_admin, created)"
                    " VALUES (?, ?, ?, ?) RETURNING id",
                    (name, password_hash, int(is_admin), now),
                )
                user_id = int(cursor.fetchone()[0])
        except integrity_errors() as exc:
            raise Conflict(f"user {name!r} already exists") from exc
        return User(user_id, name, password_hash, is_admin)

    def set_password(self, name: str, password_hash: str) -> bool:
        with self.transaction() as conn:
            cursor = conn.execute(
                "UPDATE users SET password_hash = ? WHERE name = ?", (password_hash, name)
            )
        return cursor.rowcount == 1

    def delete_user(self, name: str) -> bool:
        with self.transaction() as conn:
            cursor = conn.execute("DELETE FROM users WHERE name = ?", (name,))
        return cursor.rowcount == 1

    # -- browser sessions -------------------------------------------------------------------

    def add_session(self, digest: str, user_id: int, *, now: str, expires: str) -> None:
        """Record a new browser session; expired ones are pruned on the way (logins are
        rare, so this keeps the table small without a timer)."""
        with self.transaction() as conn:
            conn.execute("DELETE FROM sessions WHERE expires <= ?", (now,))
            conn.execute(
                "INSERT INTO sessions (digest, user_id, created, expires) VALUES (?, ?, ?, ?)",
                (digest, user_id, now, expires),
            )

    def session_user(self, digest: str, now: str) -> tuple[User, str] | None:
        """The user of an unexpired session and the session's expiry, in one statement."""
        row = self.conn.execute(
            "SELECT u.id, u.name, u.password_hash, u.is_admin, s.expires FROM sessions s"
            " JOIN users u ON u.id = s.user_id WHERE s.digest = ? AND s.expires > ?",
            (digest, now),
        ).fetchone()
        return (user_from(row), row["expires"]) if row else None

    def extend_session(self, digest: str, expires: str) -> None:
        """Slide a session's expiry; best effort (a page view must not wait for another
        writer: the next view extends it)."""
        with self.skippable("a session's expiry"), self.transaction() as conn:
            conn.execute("UPDATE sessions SET expires = ? WHERE digest = ?", (expires, digest))

    def delete_session(self, digest: str) -> None:
        with self.transaction() as conn:
            conn.execute("DELETE FROM sessions WHERE digest = ?", (digest,))
