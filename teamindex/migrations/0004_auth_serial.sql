-- A change counter for everything a login depends on (issue 3): users, tokens, allowlists.
-- The server remembers verified logins only while this counter stands still, so a password
-- change, a revoked or rotated token or a new allowlist entry takes effect on the next
-- request, also when the CLI made it in another process. Triggers keep it exact: no code
-- path can change these tables and forget to bump it.

ALTER TABLE state ADD COLUMN auth_serial INTEGER NOT NULL DEFAULT 0;

CREATE TRIGGER users_insert_auth AFTER INSERT ON users
BEGIN UPDATE state SET auth_serial = auth_serial + 1 WHERE id = 1; END;
CREATE TRIGGER users_update_auth AFTER UPDATE ON users
BEGIN UPDATE state SET auth_serial = auth_serial + 1 WHERE id = 1; END;
CREATE TRIGGER users_delete_auth AFTER DELETE ON users
BEGIN UPDATE state SET auth_serial = auth_serial + 1 WHERE id = 1; END;

CREATE TRIGGER tokens_insert_auth AFTER INSERT ON tokens
BEGIN UPDATE state SET auth_serial = auth_serial + 1 WHERE id = 1; END;
-- Not on last_used/last_ip: recording a token's use must not forget every login.
CREATE TRIGGER tokens_update_auth
AFTER UPDATE OF user_id, digest, scope, projects, allow_ips, expires, revoked ON tokens
BEGIN UPDATE state SET auth_serial = auth_serial + 1 WHERE id = 1; END;
CREATE TRIGGER tokens_delete_auth AFTER DELETE ON tokens
BEGIN UPDATE state SET auth_serial = auth_serial + 1 WHERE id = 1; END;

CREATE TRIGGER allowlist_insert_auth AFTER INSERT ON allowlist
BEGIN UPDATE state SET auth_serial = auth_serial + 1 WHERE id = 1; END;
CREATE TRIGGER allowlist_update_auth AFTER UPDATE ON allowlist
BEGIN UPDATE state SET auth_serial = auth_serial + 1 WHERE id = 1; END;
CREATE TRIGGER allowlist_delete_auth AFTER DELETE ON allowlist
BEGIN UPDATE state SET auth_serial = auth_serial + 1 WHERE id = 1; END;
