-- pgvault state database, version 6: vault access to secrets, secret
-- references by URI, and configure rows kept when their validation fails.

-- A vault reads a stored secret only when granted (pgvault secret grant).
CREATE TABLE secret_grants (
    vault_id    text NOT NULL REFERENCES vaults (id) ON DELETE CASCADE,
    secret_id   text NOT NULL REFERENCES secrets (id) ON DELETE CASCADE,
    create_time timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (vault_id, secret_id)
);
-- Instances configured before grants existed keep working.
INSERT INTO secret_grants (vault_id, secret_id)
SELECT DISTINCT vault_id, secret_id FROM backup_instances
ON CONFLICT DO NOTHING;

-- An instance's secret reference: a stored secret (secret_id, with
-- secret_version NULL = follow the latest version, or a pinned version), or
-- a value kept outside pgvault (secret_external: env://VAR or file:///path).
ALTER TABLE backup_instances ALTER COLUMN secret_id DROP NOT NULL;
ALTER TABLE backup_instances ADD COLUMN secret_version integer CHECK (secret_version >= 1);
ALTER TABLE backup_instances ADD COLUMN secret_external text;
ALTER TABLE backup_instances ADD CONSTRAINT backup_instances_secret_reference_check
    CHECK ((secret_id IS NULL) <> (secret_external IS NULL));

-- Rows whose validation failed are kept (protection_state PROTECTION_VALIDATION_FAILED,
-- or PROTECTION_VALIDATING while checks run) with the last error, to be re-validated.
ALTER TABLE backup_instances ADD COLUMN last_error_code text;
ALTER TABLE backup_instances ADD COLUMN last_error_message text;
ALTER TABLE backup_instances ADD COLUMN last_error_action text;

-- "A database is protected by at most one vault" holds for protected
-- instances only: kept failed rows do not block configuring it again.
ALTER TABLE backup_instances DROP CONSTRAINT backup_instances_server_database_key;
CREATE UNIQUE INDEX backup_instances_protected_database_key
    ON backup_instances (server_id, database)
    WHERE protection_state NOT IN ('PROTECTION_VALIDATING', 'PROTECTION_VALIDATION_FAILED');

-- Restores: the target secret reference when it is not the latest version of
-- a stored secret (secret://name/3, env://VAR, file:///path).
ALTER TABLE jobs ADD COLUMN target_secret_ref text;
