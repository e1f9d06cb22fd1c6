-- Trusted publishing (issue 15): CI identities that may trade an OIDC token for a
-- short-lived upload token, the token ids already traded, and what each minted token was for.

CREATE TABLE publishers (
    id           INTEGER PRIMARY KEY,
    -- The project, or NULL for a pending publisher registered before the project exists
    -- (its first upload creates it). Deleting the project deletes its publishers.
    project_id   INTEGER REFERENCES projects(id) ON DELETE CASCADE,
    project_name TEXT NOT NULL,               -- normalized; for pending ones the only link
    pending      INTEGER NOT NULL DEFAULT 0 CHECK (pending IN (0, 1)),
    kind         TEXT NOT NULL CHECK (kind IN ('github', 'gitlab', 'oidc')),
    issuer       TEXT NOT NULL,
    claims       TEXT NOT NULL,               -- JSON object: claim name -> required value
    -- Whose rights minted tokens narrow: the owner or admin who registered the publisher.
    user_id      INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created      TEXT NOT NULL,
    CHECK (pending = 1 OR project_id IS NOT NULL)
);
CREATE INDEX publishers_project ON publishers(project_name);
CREATE INDEX publishers_issuer ON publishers(issuer);
CREATE UNIQUE INDEX publishers_same ON publishers(project_name, kind, issuer, claims);

-- Every OIDC token id (jti) exchanged, kept until the token expires: a replay is refused.
CREATE TABLE oidc_seen (
    issuer  TEXT NOT NULL,
    jti     TEXT NOT NULL,
    expires TEXT NOT NULL,
    PRIMARY KEY (issuer, jti)
);
CREATE INDEX oidc_seen_expires ON oidc_seen(expires);

-- Which publisher minted a token and from which CI run (shown by `token list`).
-- One row per publisher the token was minted for (one workflow may publish several projects).
CREATE TABLE minted_tokens (
    token_id     INTEGER NOT NULL REFERENCES tokens(id) ON DELETE CASCADE,
    publisher_id INTEGER NOT NULL,            -- no foreign key: the record outlives removal
    repository   TEXT NOT NULL DEFAULT '',
    workflow     TEXT NOT NULL DEFAULT '',
    ref          TEXT NOT NULL DEFAULT '',
    run_id       TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (token_id, publisher_id)
);
