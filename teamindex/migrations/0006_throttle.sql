-- The login throttle in the database (issue 10): it survives a restart, and every worker
-- process counts into the same rows. Keys are plain text (no foreign keys), so deleting or
-- rebuilding users never touches these tables, and unknown user names can be counted too.
-- Times are Unix seconds (REAL): the throttle compares them with arithmetic on every check.

-- Failures per key: kind 'address' (an IPv4 address or an IPv6 /64) or 'user' (the canonical
-- user name). One upsert per failed login counts it; rows whose window and block are over
-- are pruned.
CREATE TABLE throttle (
    kind          TEXT NOT NULL CHECK (kind IN ('address', 'user')),
    subject       TEXT NOT NULL,
    window_start  REAL NOT NULL,     -- when the current counting window opened
    failures      INTEGER NOT NULL,  -- failures in that window (0 right after a block)
    max_failures  INTEGER NOT NULL,  -- the limit that applied to the last failure
    blocked_until REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (kind, subject)
) WITHOUT ROWID;

-- Addresses a user logged in from successfully: a block on the user name does not apply
-- there, so guessing a colleague's password cannot lock them out of their own machines.
-- Written at most once a minute per (user, address), so reads do not turn into writes.
CREATE TABLE known_addresses (
    user    TEXT NOT NULL,   -- users.name as stored
    address TEXT NOT NULL,   -- the throttle's address key
    seen    REAL NOT NULL,
    PRIMARY KEY (user, address)
) WITHOUT ROWID;
