-- pgvault state database, version 22: backups fanned out across workers.
-- The leader of a backup attempt (the worker holding the job's lease) opens
-- the snapshot, plans the data objects and offers them as chunk sub-tasks;
-- any worker claims them (the leader too), imports the leader's snapshot
-- and dumps them. Each sub-task has its own lease on the database clock; a
-- chunk taken by the leader follows the job's lease (lease_expires_at NULL).
-- A sub-task belongs to one attempt: reports of a superseded attempt are
-- refused, and the manifest names the chunks of the committing attempt only.

-- What a user asked of one backup job (`backup now --workers N`).
CREATE TABLE fanout_requests (
    job_id  uuid PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
    workers integer NOT NULL CHECK (workers BETWEEN 2 AND 64)
);

CREATE TABLE chunk_tasks (
    job_id           uuid NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    attempt          integer NOT NULL,
    -- The planned object's path under the point (e.g. data/16384/00003.copy.zst).
    chunk_key        text NOT NULL,
    -- Offer order (largest first): claims take the lowest first.
    position         integer NOT NULL,
    -- The leader's exported snapshot the chunk is dumped on.
    snapshot_id      text NOT NULL,
    -- What to dump: the engine's plan of the object (opaque here).
    spec             text NOT NULL,
    -- Tables the object holds (schema-qualified), for job details.
    tables           text[] NOT NULL,
    state            text NOT NULL DEFAULT 'QUEUED'
                         CHECK (state IN ('QUEUED', 'IN_PROGRESS', 'DONE')),
    -- Claims so far; take N writes its own object, so a redone chunk never
    -- reuses the path of a take that may have half-written it.
    takes            integer NOT NULL DEFAULT 0,
    lease_token      uuid,
    lease_expires_at timestamptz,
    worker_id        text,
    -- The stored result (state DONE): the object, its size and SHA-256,
    -- rows, and the manifest entries the engine reported (JSON).
    object_path      text,
    size             bigint,
    sha256           text,
    rows             bigint,
    entries          text,
    last_error       text,
    done_time        timestamptz,
    PRIMARY KEY (job_id, attempt, chunk_key),
    CHECK (state <> 'DONE' OR (object_path IS NOT NULL AND entries IS NOT NULL))
);
CREATE INDEX chunk_tasks_lease ON chunk_tasks (lease_token);

-- Invitations to help with a job's chunks ride the same queue as tasks.
ALTER TABLE outbox ADD COLUMN chunk_invite boolean NOT NULL DEFAULT false;
