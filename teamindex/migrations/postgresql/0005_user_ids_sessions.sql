-- Issue 10: user ids are never reused, deleting a user changes what pages show, and a browser
-- session can be ended on the server.
--
-- User ids: an identity column never hands an id out twice, so PostgreSQL needs no rebuild
-- of the users table here (SQLite's 0005 rebuilds it for AUTOINCREMENT).

-- A deleted user's roles go with them (ON DELETE CASCADE), which changes project listings:
-- the index serial moves too, so no cached listing outlives the user.
CREATE FUNCTION bump_auth_and_index_serial() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE state SET auth_serial = auth_serial + 1, serial = serial + 1 WHERE id = 1;
    RETURN NULL;
END $$;
DROP TRIGGER users_delete_auth ON users;
CREATE TRIGGER users_delete_auth AFTER DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION bump_auth_and_index_serial();

CREATE TABLE sessions (
    digest  TEXT PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created TEXT NOT NULL,
    expires TEXT NOT NULL
);
CREATE INDEX sessions_user ON sessions(user_id);
CREATE INDEX sessions_expires ON sessions(expires);
