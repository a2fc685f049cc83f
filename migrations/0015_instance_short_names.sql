-- pgvault state database, version 15: a short name per backup instance,
-- the readable name people type (`prod/db1-billing`) instead of its UUID.
-- New instances are named by the coordinator (`short_names::short_name_for`);
-- the instances created before are named here the same way, oldest first:
-- `<server>-<database>` lowercased, every run of other characters than
-- [a-z0-9] one '-', at most 63 characters, suffixed -2, -3, ... when the
-- name is taken in the vault (or would read as a UUID).

ALTER TABLE backup_instances ADD COLUMN short_name text;

DO $$
DECLARE
    r record;
    db text;
    base text;
    candidate text;
    n integer;
BEGIN
    FOR r IN SELECT id, vault_id, server_id, database FROM backup_instances
             ORDER BY create_time, id LOOP
        db := btrim(regexp_replace(lower(r.database), '[^a-z0-9]+', '-', 'g'), '-');
        base := btrim(regexp_replace(lower(r.server_id), '[^a-z0-9]+', '-', 'g'), '-')
                || '-' || CASE WHEN db = '' THEN 'db' ELSE db END;
        base := rtrim(left(base, 63), '-');
        candidate := base;
        n := 1;
        WHILE candidate ~ '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
              OR EXISTS (SELECT 1 FROM backup_instances
                          WHERE vault_id = r.vault_id AND short_name = candidate) LOOP
            n := n + 1;
            candidate := rtrim(left(base, 63 - length('-' || n)), '-') || '-' || n;
        END LOOP;
        UPDATE backup_instances SET short_name = candidate WHERE id = r.id;
    END LOOP;
END
$$;

ALTER TABLE backup_instances ALTER COLUMN short_name SET NOT NULL;
ALTER TABLE backup_instances ADD CONSTRAINT backup_instances_short_name_key
    UNIQUE (vault_id, short_name);
ALTER TABLE backup_instances ADD CONSTRAINT backup_instances_short_name_check
    CHECK (short_name ~ '^[a-z][a-z0-9-]{0,62}$');
