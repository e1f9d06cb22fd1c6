-- Issue 10: user ids are never reused, deleting a user changes what pages show, and a browser
-- session can be ended on the server.
--
-- Page caches and docs links key on the user id; SQLite hands the highest id out again after
-- that user is deleted unless the table says AUTOINCREMENT, which only CREATE TABLE can say.
-- So the table is rebuilt (SQLite's documented 12-step procedure: the migration runs with
-- foreign keys off and is checked with foreign_key_check before it commits); every other
-- table's REFERENCES users(id) points at the new table once it has the old name.

CREATE TABLE users_new (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    name          TEXT NOT NULL UNIQUE COLLATE NOCASE,
    password_hash TEXT NOT NULL,
    is_admin      INTEGER NOT NULL DEFAULT 0 CHECK (is_admin IN (0, 1)),
    created       TEXT NOT NULL
);
INSERT INTO users_new (id, name, password_hash, is_admin, created)
    SELECT id, name, password_hash, is_admin, created FROM users;
DROP TABLE users;  -- its triggers go with it; they are made again below
ALTER TABLE users_new RENAME TO users;

CREATE TRIGGER users_insert_auth AFTER INSERT ON users
BEGIN UPDATE state SET auth_serial = auth_serial + 1 WHERE id = 1; END;
CREATE TRIGGER users_update_auth AFTER UPDATE ON users
BEGIN UPDATE state SET auth_serial = auth_serial + 1 WHERE id = 1; END;
-- A deleted user's roles go with them (ON DELETE CASCADE), which changes project listings:
-- the index serial moves too, so no cached listing outlives the user.
CREATE TRIGGER users_delete_auth AFTER DELETE ON users
BEGIN UPDATE state SET auth_serial = auth_serial + 1, serial = serial + 1 WHERE id = 1; END;

-- Browser sessions (the signed cookie names one): logging out deletes the row, so a copied
-- cookie is worthless afterwards; every server process of the data dir sees the same rows.
CREATE TABLE sessions (
    digest  TEXT PRIMARY KEY,                -- sha256 of the session id; the id is not stored
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created TEXT NOT NULL,
    expires TEXT NOT NULL                    -- UTC, ISO 8601 with Z; expired rows are pruned
);
CREATE INDEX sessions_user ON sessions(user_id);
CREATE INDEX sessions_expires ON sessions(expires);
