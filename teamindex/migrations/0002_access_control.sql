-- Access control: API tokens, project visibility, IP allowlists, audit log.

ALTER TABLE projects ADD COLUMN visibility TEXT NOT NULL DEFAULT 'team'
    CHECK (visibility IN ('team', 'restricted'));

CREATE TABLE tokens (
    id        INTEGER PRIMARY KEY,
    user_id   INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    digest    TEXT NOT NULL UNIQUE,          -- sha256 of the secret; the secret is never stored
    scope     TEXT NOT NULL CHECK (scope IN ('read', 'upload')),
    projects  TEXT NOT NULL DEFAULT '[]',    -- JSON list of names/globs; [] = every project
    allow_ips TEXT NOT NULL DEFAULT '[]',    -- JSON list of CIDRs; [] = no extra restriction
    note      TEXT NOT NULL DEFAULT '',
    created   TEXT NOT NULL,
    expires   TEXT,                          -- NULL = never
    revoked   TEXT,                          -- NULL = active
    last_used TEXT,
    last_ip   TEXT
);
CREATE INDEX tokens_user ON tokens(user_id);

-- Global allowlist (user_id NULL) and per-user allowlists. Empty global list = allow all.
CREATE TABLE allowlist (
    id      INTEGER PRIMARY KEY,
    user_id INTEGER REFERENCES users(id) ON DELETE CASCADE,
    cidr    TEXT NOT NULL,
    note    TEXT NOT NULL DEFAULT '',
    created TEXT NOT NULL
);
CREATE UNIQUE INDEX allowlist_entry ON allowlist(ifnull(user_id, 0), cidr);

CREATE TABLE audit (
    id       INTEGER PRIMARY KEY,
    time     TEXT NOT NULL,
    ip       TEXT NOT NULL DEFAULT '',
    user     TEXT NOT NULL DEFAULT '',
    token_id INTEGER,
    action   TEXT NOT NULL,
    project  TEXT NOT NULL DEFAULT '',
    filename TEXT NOT NULL DEFAULT '',
    outcome  TEXT NOT NULL DEFAULT 'ok',
    detail   TEXT NOT NULL DEFAULT ''
);
CREATE INDEX audit_time ON audit(time);

-- Downloads are counted per file per day instead of one audit row each.
CREATE TABLE download_counts (
    day      TEXT NOT NULL,
    filename TEXT NOT NULL,
    project  TEXT NOT NULL,
    count    INTEGER NOT NULL,
    PRIMARY KEY (day, filename)
);
