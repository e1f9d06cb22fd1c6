-- The login throttle in the database (issue 10); see ../0006_throttle.sql.
-- Times are Unix seconds (DOUBLE PRECISION, SQLite's REAL).

CREATE TABLE throttle (
    kind          TEXT NOT NULL CHECK (kind IN ('address', 'user')),
    subject       TEXT NOT NULL,
    window_start  DOUBLE PRECISION NOT NULL,
    failures      BIGINT NOT NULL,
    max_failures  BIGINT NOT NULL,
    blocked_until DOUBLE PRECISION NOT NULL DEFAULT 0,
    PRIMARY KEY (kind, subject)
);

CREATE TABLE known_addresses (
    "user"  TEXT NOT NULL,   -- users.name as stored (quoted: a reserved word here)
    address TEXT NOT NULL,
    seen    DOUBLE PRECISION NOT NULL,
    PRIMARY KEY ("user", address)
);
