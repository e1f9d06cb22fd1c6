-- The upstream proxy's origin controls (issue 13), in the database instead of a file: they
-- travel with `teamindex backup`/restore, and every process sees a change on its next
-- request. upstream_serial counts changes to them (triggers keep it exact, as auth_serial
-- does for logins): servers keep the rules, and proxied pages built under them, while it
-- stands still.

ALTER TABLE state ADD COLUMN upstream_serial INTEGER NOT NULL DEFAULT 0;

-- `teamindex protect PATTERN`: a glob over normalized names never sent upstream.
CREATE TABLE upstream_protected (
    pattern TEXT PRIMARY KEY CHECK (pattern = lower(pattern) AND length(pattern) > 0)
) WITHOUT ROWID;

-- `project set NAME --upstream allow|deny --min-age AGE`: per name, which need not exist
-- here (an upstream project can be exempted from the cooldown). NULL: the index default.
CREATE TABLE upstream_rules (
    name    TEXT PRIMARY KEY CHECK (name = lower(name)),   -- normalized (PEP 503)
    mode    TEXT CHECK (mode IN ('allow', 'deny')),
    min_age INTEGER CHECK (min_age >= 0)                   -- seconds
) WITHOUT ROWID;  -- a rule left with neither is deleted by the same transaction

CREATE TRIGGER upstream_protected_insert AFTER INSERT ON upstream_protected
BEGIN UPDATE state SET upstream_serial = upstream_serial + 1 WHERE id = 1; END;
CREATE TRIGGER upstream_protected_update AFTER UPDATE ON upstream_protected
BEGIN UPDATE state SET upstream_serial = upstream_serial + 1 WHERE id = 1; END;
CREATE TRIGGER upstream_protected_delete AFTER DELETE ON upstream_protected
BEGIN UPDATE state SET upstream_serial = upstream_serial + 1 WHERE id = 1; END;

CREATE TRIGGER upstream_rules_insert AFTER INSERT ON upstream_rules
BEGIN UPDATE state SET upstream_serial = upstream_serial + 1 WHERE id = 1; END;
CREATE TRIGGER upstream_rules_update AFTER UPDATE ON upstream_rules
BEGIN UPDATE state SET upstream_serial = upstream_serial + 1 WHERE id = 1; END;
CREATE TRIGGER upstream_rules_delete AFTER DELETE ON upstream_rules
BEGIN UPDATE state SET upstream_serial = upstream_serial + 1 WHERE id = 1; END;
