-- pgvault state database, version 1: vaults, policies, servers, secrets,
-- backup instances, jobs (with leases and progress), recovery points, the
-- task outbox and API tokens. Enumerations are stored as their proto names
-- (e.g. 'IN_PROGRESS') so rows read the same as the API.

CREATE TABLE vaults (
    id                 text PRIMARY KEY,
    region             text NOT NULL DEFAULT '',
    standard_datastore text NOT NULL,
    archive_datastore  text NOT NULL DEFAULT '',
    description        text NOT NULL DEFAULT '',
    create_time        timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE policies (
    vault_id        text NOT NULL REFERENCES vaults (id) ON DELETE CASCADE,
    id              text NOT NULL,
    -- ISO weekday numbers, 1 = Monday .. 7 = Sunday.
    weekdays        smallint[] NOT NULL,
    time_of_day     text NOT NULL,
    time_zone       text NOT NULL,
    -- [{"kind": "DEFAULT", "standard_duration": "P3M", "archive_duration": ""}, ...]
    retention_rules jsonb NOT NULL,
    create_time     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (vault_id, id)
);

CREATE TABLE servers (
    id          text PRIMARY KEY,
    host        text NOT NULL,
    port        integer NOT NULL CHECK (port BETWEEN 1 AND 65535),
    region      text NOT NULL DEFAULT '',
    agent       text NOT NULL DEFAULT '',
    create_time timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE secrets (
    id             text PRIMARY KEY,
    latest_version integer NOT NULL,
    create_time    timestamptz NOT NULL DEFAULT now(),
    update_time    timestamptz NOT NULL DEFAULT now()
);

-- Every value ever put, AES-256-GCM sealed with a random 96-bit nonce.
CREATE TABLE secret_versions (
    secret_id   text NOT NULL REFERENCES secrets (id) ON DELETE CASCADE,
    version     integer NOT NULL,
    nonce       bytea NOT NULL,
    ciphertext  bytea NOT NULL,
    create_time timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (secret_id, version)
);

CREATE TABLE backup_instances (
    id               uuid PRIMARY KEY,
    vault_id         text NOT NULL REFERENCES vaults (id),
    server_id        text NOT NULL REFERENCES servers (id),
    database         text NOT NULL,
    policy_id        text NOT NULL,
    secret_id        text NOT NULL REFERENCES secrets (id),
    protection_state text NOT NULL DEFAULT 'PROTECTION_CONFIGURED',
    create_time      timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (vault_id, policy_id) REFERENCES policies (vault_id, id),
    -- A database is protected by at most one vault.
    CONSTRAINT backup_instances_server_database_key UNIQUE (server_id, database)
);
CREATE INDEX backup_instances_vault_idx ON backup_instances (vault_id, create_time, id);

CREATE TABLE jobs (
    id                 uuid PRIMARY KEY,
    operation          text NOT NULL,
    state              text NOT NULL,
    vault_id           text NOT NULL REFERENCES vaults (id),
    backup_instance_id uuid REFERENCES backup_instances (id),
    -- Backups: the point produced (set on completion). Restores: the source point.
    recovery_point_id  uuid,
    -- Backups: retention rule kind the point is tagged with.
    retention_rule     text,
    -- Restores: where to.
    target_server_id   text REFERENCES servers (id),
    target_database    text,
    target_secret_id   text REFERENCES secrets (id),
    -- 1 on creation; raised on every re-queue.
    attempt            integer NOT NULL DEFAULT 1,
    -- The lease, measured on this database's clock.
    lease_owner        text,
    lease_token        uuid,
    lease_expires_at   timestamptz,
    -- Backups: where the current attempt writes (fresh point id per attempt).
    attempt_point_id   uuid,
    attempt_datastore  text,
    attempt_prefix     text,
    -- Progress reported by heartbeats.
    bytes_done         bigint NOT NULL DEFAULT 0,
    rows_done          bigint NOT NULL DEFAULT 0,
    chunks_done        integer NOT NULL DEFAULT 0,
    chunks_total       integer NOT NULL DEFAULT 0,
    phase              text NOT NULL DEFAULT '',
    -- Terminal failure.
    error_code         text,
    error_message      text,
    error_action       text,
    create_time        timestamptz NOT NULL DEFAULT now(),
    start_time         timestamptz,
    end_time           timestamptz,
    update_time        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX jobs_newest_idx ON jobs (create_time DESC, id DESC);
CREATE INDEX jobs_lease_idx ON jobs (lease_expires_at) WHERE state = 'IN_PROGRESS';
CREATE INDEX jobs_instance_idx ON jobs (backup_instance_id);

CREATE TABLE recovery_points (
    id                 uuid PRIMARY KEY,
    backup_instance_id uuid NOT NULL REFERENCES backup_instances (id),
    job_id             uuid NOT NULL REFERENCES jobs (id),
    database           text NOT NULL,
    snapshot_time      timestamptz NOT NULL,
    tier               text NOT NULL,
    -- Datastore root URL and the point's directory under it.
    datastore_url      text NOT NULL,
    prefix             text NOT NULL,
    stored_bytes       bigint NOT NULL,
    raw_bytes          bigint NOT NULL,
    chunk_count        integer NOT NULL,
    manifest_sha256    text NOT NULL,
    server_version     text NOT NULL,
    retention_tag      text NOT NULL,
    expire_time        timestamptz NOT NULL,
    create_time        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX recovery_points_instance_idx ON recovery_points (backup_instance_id, create_time DESC, id DESC);

-- Tasks to publish: written in the job's transaction, deleted once the broker confirmed.
CREATE TABLE outbox (
    id          bigserial PRIMARY KEY,
    job_id      uuid NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    attempt     integer NOT NULL,
    create_time timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE api_tokens (
    id           uuid PRIMARY KEY,
    name         text NOT NULL,
    -- SHA-256 of the token; the token itself is never stored.
    token_sha256 bytea NOT NULL UNIQUE,
    role         text NOT NULL DEFAULT 'Owner',
    create_time  timestamptz NOT NULL DEFAULT now()
);
