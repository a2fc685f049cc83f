-- pgvault state database, version 16: whole-server protection. A server
-- protected with `--all-databases` is recorded here with the vault, policy
-- and secret its databases are protected with; at each slot of the policy
-- the scheduler lists the server's databases again and protects the new
-- ones (auto-include). A server is protected whole by at most one vault.
CREATE TABLE server_protections (
    server_id      text PRIMARY KEY REFERENCES servers (id),
    vault_id       text NOT NULL REFERENCES vaults (id) ON DELETE CASCADE,
    policy_id      text NOT NULL,
    -- The secret reference as written (secret://name, secret://name/3,
    -- env://VAR, file:///path).
    secret_ref     text NOT NULL,
    -- Slots before this are never run.
    schedule_since timestamptz NOT NULL,
    create_time    timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (vault_id, policy_id) REFERENCES policies (vault_id, id)
);

-- What each slot's auto-include pass found: the primary key makes the pass
-- run once per slot, whichever coordinator leads the scheduler.
CREATE TABLE server_protection_runs (
    server_id text NOT NULL REFERENCES server_protections (server_id) ON DELETE CASCADE,
    slot_time timestamptz NOT NULL,
    run_time  timestamptz NOT NULL DEFAULT now(),
    -- Databases protected by this pass (new instances, validated).
    included  text[] NOT NULL DEFAULT '{}',
    -- "database: CODE: message" for databases that failed validation.
    refused   text[] NOT NULL DEFAULT '{}',
    -- Protected databases the server no longer has: their instances and
    -- points are kept, and their backups fail with UserErrorDBNotFound
    -- until protection is stopped (or the database is back).
    missing   text[] NOT NULL DEFAULT '{}',
    -- Why the server could not be listed, when it could not.
    error     text NOT NULL DEFAULT '',
    PRIMARY KEY (server_id, slot_time)
);

-- The restore job of a whole-server restore that restores the point's
-- globals (roles, tablespaces) before its database; the set's other
-- restores wait for it (jobs.waits_for_job_id).
CREATE TABLE restore_globals (
    job_id uuid PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE
);
