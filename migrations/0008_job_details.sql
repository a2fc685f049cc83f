-- pgvault state database, version 8: job details — every attempt of a job
-- and the per-table sub-tasks of its current attempt.

-- One row per attempt, written when a worker claims it and closed where the
-- coordinator ends it (complete, fail, lease expiry, take-over, cancel).
CREATE TABLE job_attempts (
    job_id        uuid NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    attempt       integer NOT NULL,
    worker        text NOT NULL,
    start_time    timestamptz NOT NULL DEFAULT now(),
    end_time      timestamptz,
    -- RUNNING, COMPLETED, FAILED, LEASE_EXPIRED, FENCED, CANCELLED.
    outcome       text NOT NULL DEFAULT 'RUNNING',
    error_code    text,
    error_message text,
    error_action  text,
    PRIMARY KEY (job_id, attempt)
);

-- Per-table progress reported by heartbeats (only what changed since the
-- last one), upserted in one statement per heartbeat. Rows of earlier
-- attempts are removed when a new attempt is claimed.
CREATE TABLE job_tables (
    job_id       uuid NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    attempt      integer NOT NULL,
    name         text NOT NULL,
    -- QUEUED, RUNNING, DONE, FAILED.
    state        text NOT NULL,
    chunks_done  integer NOT NULL DEFAULT 0,
    chunks_total integer NOT NULL DEFAULT 0,
    rows_done    bigint NOT NULL DEFAULT 0,
    raw_bytes    bigint NOT NULL DEFAULT 0,
    stored_bytes bigint NOT NULL DEFAULT 0,
    start_time   timestamptz,
    end_time     timestamptz,
    -- When the row last changed (database clock): WatchJob sends changes only.
    update_time  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, attempt, name)
);
