-- Hosted documentation: one current build per release (issue 6).
-- The build's files live in data/docs/<project>/<canonical version>/<build>/; switching this
-- row is the atomic step of a re-upload, and deleting a release deletes its row with it.

CREATE TABLE docs (
    release_id  INTEGER PRIMARY KEY REFERENCES releases(id) ON DELETE CASCADE,
    build       TEXT NOT NULL,                -- directory name of the current build
    files       INTEGER NOT NULL CHECK (files >= 0),
    size        INTEGER NOT NULL CHECK (size >= 0),
    uploaded    TEXT NOT NULL,                -- UTC, ISO 8601 with Z
    uploader_id INTEGER REFERENCES users(id) ON DELETE SET NULL
);
