-- teamindex schema, version 1.
-- The schema states the invariants; code catches IntegrityError instead of checking first.

CREATE TABLE users (
    id            INTEGER PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE COLLATE NOCASE,
    password_hash TEXT NOT NULL,
    is_admin      INTEGER NOT NULL DEFAULT 0 CHECK (is_admin IN (0, 1)),
    created       TEXT NOT NULL
);

-- A single row: a counter bumped by every change to what the index shows.
-- Page caches compare serials instead of re-reading rows (works across processes: CLI + server).
CREATE TABLE state (
    id     INTEGER PRIMARY KEY CHECK (id = 1),
    serial INTEGER NOT NULL
);
INSERT INTO state (id, serial) VALUES (1, 0);

CREATE TABLE projects (
    id           INTEGER PRIMARY KEY,
    name         TEXT NOT NULL UNIQUE,          -- normalized (PEP 503)
    display_name TEXT NOT NULL,
    created      TEXT NOT NULL,
    serial       INTEGER NOT NULL,              -- state.serial of the last change
    CHECK (name = lower(name))
);

CREATE TABLE roles (
    user_id    INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    project_id INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    role       TEXT NOT NULL CHECK (role IN ('owner', 'maintainer', 'reader')),
    PRIMARY KEY (user_id, project_id)
);

CREATE TABLE releases (
    id                INTEGER PRIMARY KEY,
    project_id        INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    version           TEXT NOT NULL,            -- as first uploaded
    canonical_version TEXT NOT NULL,            -- packaging.utils.canonicalize_version
    summary           TEXT NOT NULL DEFAULT '',
    metadata_json     TEXT NOT NULL DEFAULT '{}',
    created           TEXT NOT NULL,
    yanked            INTEGER NOT NULL DEFAULT 0 CHECK (yanked IN (0, 1)),
    yanked_reason     TEXT NOT NULL DEFAULT '',
    UNIQUE (project_id, canonical_version)
);

CREATE TABLE files (
    id              INTEGER PRIMARY KEY,
    release_id      INTEGER NOT NULL REFERENCES releases(id) ON DELETE CASCADE,
    filename        TEXT NOT NULL UNIQUE,
    packagetype     TEXT NOT NULL CHECK (packagetype IN ('sdist', 'bdist_wheel')),
    python_version  TEXT NOT NULL,
    requires_python TEXT NOT NULL DEFAULT '',
    size            INTEGER NOT NULL CHECK (size >= 0),
    sha256          TEXT NOT NULL UNIQUE,
    blake2_256      TEXT NOT NULL,
    md5             TEXT NOT NULL,
    metadata_sha256 TEXT,                       -- PEP 658 file present when not NULL
    upload_time     TEXT NOT NULL,              -- UTC, ISO 8601 with microseconds and Z
    uploader_id     INTEGER REFERENCES users(id) ON DELETE SET NULL
);
CREATE INDEX files_release ON files(release_id);

-- Filenames that once existed: never reused with other bytes (as PyPI, PROTOCOL.md 6.9).
CREATE TABLE deleted_files (
    filename   TEXT PRIMARY KEY,
    sha256     TEXT NOT NULL,
    deleted_at TEXT NOT NULL
);
