-- A change counter for everything a login depends on (issue 3): users, tokens, allowlists.
-- Row triggers keep it exact, as SQLite's do (../0004_auth_serial.sql).

ALTER TABLE state ADD COLUMN auth_serial BIGINT NOT NULL DEFAULT 0;

CREATE FUNCTION bump_auth_serial() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE state SET auth_serial = auth_serial + 1 WHERE id = 1;
    RETURN NULL;
END $$;

CREATE TRIGGER users_insert_auth AFTER INSERT ON users
    FOR EACH ROW EXECUTE FUNCTION bump_auth_serial();
CREATE TRIGGER users_update_auth AFTER UPDATE ON users
    FOR EACH ROW EXECUTE FUNCTION bump_auth_serial();
CREATE TRIGGER users_delete_auth AFTER DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION bump_auth_serial();

CREATE TRIGGER tokens_insert_auth AFTER INSERT ON tokens
    FOR EACH ROW EXECUTE FUNCTION bump_auth_serial();
-- Not on last_used/last_ip: recording a token's use must not forget every login.
CREATE TRIGGER tokens_update_auth
    AFTER UPDATE OF user_id, digest, scope, projects, allow_ips, expires, revoked ON tokens
    FOR EACH ROW EXECUTE FUNCTION bump_auth_serial();
CREATE TRIGGER tokens_delete_auth AFTER DELETE ON tokens
    FOR EACH ROW EXECUTE FUNCTION bump_auth_serial();

CREATE TRIGGER allowlist_insert_auth AFTER INSERT ON allowlist
    FOR EACH ROW EXECUTE FUNCTION bump_auth_serial();
CREATE TRIGGER allowlist_update_auth AFTER UPDATE ON allowlist
    FOR EACH ROW EXECUTE FUNCTION bump_auth_serial();
CREATE TRIGGER allowlist_delete_auth AFTER DELETE ON allowlist
    FOR EACH ROW EXECUTE FUNCTION bump_auth_serial();
