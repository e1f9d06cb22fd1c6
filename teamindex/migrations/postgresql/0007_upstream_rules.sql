-- The upstream proxy's origin controls (issue 13); see ../0007_upstream_rules.sql.

ALTER TABLE state ADD COLUMN upstream_serial BIGINT NOT NULL DEFAULT 0;

CREATE TABLE upstream_protected (
    pattern TEXT PRIMARY KEY CHECK (pattern = lower(pattern) AND length(pattern) > 0)
);

CREATE TABLE upstream_rules (
    name    TEXT PRIMARY KEY CHECK (name = lower(name)),
    mode    TEXT CHECK (mode IN ('allow', 'deny')),
    min_age BIGINT CHECK (min_age >= 0)
);

CREATE FUNCTION bump_upstream_serial() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE state SET upstream_serial = upstream_serial + 1 WHERE id = 1;
    RETURN NULL;
END $$;

CREATE TRIGGER upstream_protected_insert AFTER INSERT ON upstream_protected
    FOR EACH ROW EXECUTE FUNCTION bump_upstream_serial();
CREATE TRIGGER upstream_protected_update AFTER UPDATE ON upstream_protected
    FOR EACH ROW EXECUTE FUNCTION bump_upstream_serial();
CREATE TRIGGER upstream_protected_delete AFTER DELETE ON upstream_protected
    FOR EACH ROW EXECUTE FUNCTION bump_upstream_serial();

CREATE TRIGGER upstream_rules_insert AFTER INSERT ON upstream_rules
    FOR EACH ROW EXECUTE FUNCTION bump_upstream_serial();
CREATE TRIGGER upstream_rules_update AFTER UPDATE ON upstream_rules
    FOR EACH ROW EXECUTE FUNCTION bump_upstream_serial();
CREATE TRIGGER upstream_rules_delete AFTER DELETE ON upstream_rules
    FOR EACH ROW EXECUTE FUNCTION bump_upstream_serial();
