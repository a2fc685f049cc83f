-- Access control: roles per token, globally or on one vault.
-- api_tokens.role (from version 1) is the token's global role; '' means none,
-- so new tokens have no rights until a role is assigned.
ALTER TABLE api_tokens ALTER COLUMN role SET DEFAULT '';

-- Roles on one vault; they end with the token or the vault.
CREATE TABLE vault_role_assignments (
    token_id    uuid NOT NULL REFERENCES api_tokens (id) ON DELETE CASCADE,
    vault_id    text NOT NULL REFERENCES vaults (id) ON DELETE CASCADE,
    role        text NOT NULL,
    create_time timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (token_id, vault_id)
);
