-- Client-side encryption of recovery points (issue 18). A vault's
-- encryption; its key versions, each wrapped by the coordinator's master
-- key; and each recovery point's data key, wrapped by one version of its
-- vault's key. Vaults created before this migration stay 'none' (the API
-- creates new vaults encrypted unless asked otherwise).
ALTER TABLE vaults ADD COLUMN encryption text NOT NULL DEFAULT 'none'
    CHECK (encryption IN ('none', 'aes-256-gcm'));

CREATE TABLE vault_keys (
    vault_id    text NOT NULL REFERENCES vaults (id) ON DELETE CASCADE,
    version     integer NOT NULL CHECK (version >= 1),
    -- nonce (12) || AES-256-GCM(key) || tag (16), AAD "pgvault-vault-key:{vault}:{version}".
    wrapped_key bytea NOT NULL,
    create_time timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (vault_id, version)
);

-- Written when a backup attempt is claimed (a fresh point id per attempt),
-- so the row exists before any object is sealed; read by every task that
-- touches the point. No foreign key to recovery_points: the point row is
-- written when the backup completes.
CREATE TABLE point_keys (
    point_id          uuid PRIMARY KEY,
    vault_id          text NOT NULL REFERENCES vaults (id) ON DELETE CASCADE,
    vault_key_version integer NOT NULL,
    -- nonce (12) || AES-256-GCM(key) || tag (16), AAD "pgvault-data-key:{point}".
    wrapped_key       bytea NOT NULL,
    create_time       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX point_keys_vault_idx ON point_keys (vault_id);
