-- pgvault state database, version 12: agents — processes next to servers
-- that no worker can reach, dialling out to a coordinator and running the
-- tasks and probes of the servers bound to them (servers.agent).

-- An agent: a name, a region (servers bound to it must be in it) and its
-- one API token (role Agent). The token cannot be revoked on its own while
-- the agent exists: DeleteAgent deletes both.
CREATE TABLE agents (
    id          text PRIMARY KEY,
    region      text NOT NULL DEFAULT '',
    token_id    uuid NOT NULL UNIQUE REFERENCES api_tokens (id) ON DELETE RESTRICT,
    create_time timestamptz NOT NULL DEFAULT now()
);

-- One row per process of an agent (a random instance id per start), written
-- by the coordinator holding its stream: at hello (also when the hello is
-- refused, e.g. for an unsupported protocol: supported = false), on every
-- status (last_seen, running jobs) and when the stream ends
-- (disconnect_time). An instance is live while it is supported, its stream
-- has not ended and live_until (last_seen plus three status intervals of
-- the coordinator holding the stream) has not passed; all on this
-- database's clock. Rows neither live nor seen for 24 hours are swept.
CREATE TABLE agent_instances (
    instance_id      uuid PRIMARY KEY,
    agent_id         text NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    -- The instance's current stream: a reconnect replaces it, after which
    -- the older stream's statuses and end change nothing.
    stream_id        uuid NOT NULL,
    -- The coordinator holding (or that refused) the stream.
    coordinator      text NOT NULL,
    hostname         text NOT NULL,
    version          text NOT NULL,
    protocol_version integer NOT NULL,
    supported        boolean NOT NULL,
    refused_reason   text NOT NULL DEFAULT '',
    pg_tool_majors   integer[] NOT NULL DEFAULT '{}',
    concurrency      integer NOT NULL DEFAULT 0,
    running_job_ids  uuid[] NOT NULL DEFAULT '{}',
    connect_time     timestamptz NOT NULL DEFAULT now(),
    last_seen        timestamptz NOT NULL DEFAULT now(),
    live_until       timestamptz NOT NULL DEFAULT now(),
    disconnect_time  timestamptz
);
CREATE INDEX agent_instances_agent_idx ON agent_instances (agent_id, last_seen DESC);

-- Questions the API asks a server only its agent reaches (ListDatabases,
-- readiness checks): written by the API handler, offered to a live
-- instance (again once not_before passes while unclaimed), claimed,
-- answered, read and deleted by the handler. Only the secret *reference*
-- is stored; the claimer gets the connection resolved from it.
CREATE TABLE probes (
    id          uuid PRIMARY KEY,
    agent_id    text NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    kind        text NOT NULL CHECK (kind IN ('LIST_DATABASES', 'READINESS')),
    server_id   text NOT NULL REFERENCES servers (id) ON DELETE CASCADE,
    database    text NOT NULL,
    secret_ref  text NOT NULL,
    -- The vault whose grant a stored secret needs (readiness checks).
    vault_id    text REFERENCES vaults (id) ON DELETE CASCADE,
    not_before  timestamptz NOT NULL DEFAULT now(),
    claimed_by  uuid,
    claim_time  timestamptz,
    -- {"databases": [...]}, {"readiness": {...}} or {"error": {...}}.
    answer      jsonb,
    answer_time timestamptz,
    create_time timestamptz NOT NULL DEFAULT now(),
    CHECK ((claimed_by IS NULL) = (claim_time IS NULL)),
    CHECK ((answer IS NULL) = (answer_time IS NULL))
);
CREATE INDEX probes_due_idx ON probes (agent_id, not_before) WHERE claimed_by IS NULL;

-- The agent a job's tasks go to (NULL: the workers), fixed when the job is
-- created from its server's agent: backups and restores only, never the
-- lifecycle jobs (they touch datastores only).
ALTER TABLE jobs
    ADD COLUMN agent_id text,
    ADD CONSTRAINT jobs_agent_check CHECK
        (agent_id IS NULL OR operation IN ('SCHEDULED_BACKUP', 'ON_DEMAND_BACKUP', 'RESTORE'));
CREATE INDEX jobs_agent_queued_idx ON jobs (agent_id, update_time) WHERE agent_id IS NOT NULL AND state = 'QUEUED';

-- The agent that ran an attempt (NULL: a worker) and, for a failed
-- attempt, the last log lines its runner wrote.
ALTER TABLE job_attempts
    ADD COLUMN agent    text,
    ADD COLUMN log_tail text[] NOT NULL DEFAULT '{}';
