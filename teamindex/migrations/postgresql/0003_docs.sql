-- Hosted documentation: one current build per release (issue 6).

CREATE TABLE docs (
    release_id  BIGINT PRIMARY KEY REFERENCES releases(id) ON DELETE CASCADE,
    build       TEXT NOT NULL,
    files       BIGINT NOT NULL CHECK (files >= 0),
    size        BIGINT NOT NULL CHECK (size >= 0),
    uploaded    TEXT NOT NULL,
    uploader_id BIGINT REFERENCES users(id) ON DELETE SET NULL
);
