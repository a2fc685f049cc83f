-- pgvault state database, version 7: job controls for big histories and
-- failed attempts.

-- A re-queued attempt is published only from this instant (exponential
-- backoff between attempts); new jobs are due at once.
ALTER TABLE outbox ADD COLUMN not_before timestamptz NOT NULL DEFAULT now();

-- Where a failed, fenced or superseded attempt wrote. Its objects are never
-- referenced by a recovery point; the collector deletes them once no worker
-- can still be writing there (collect_after), then deletes the row.
CREATE TABLE attempt_garbage (
    id            bigserial PRIMARY KEY,
    job_id        uuid NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    attempt       integer NOT NULL,
    datastore_url text NOT NULL,
    prefix        text NOT NULL,
    collect_after timestamptz NOT NULL,
    last_error    text NOT NULL DEFAULT '',
    create_time   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (datastore_url, prefix)
);
CREATE INDEX attempt_garbage_due_idx ON attempt_garbage (collect_after);

-- `job list` filters stay index-backed with millions of rows.
CREATE INDEX jobs_vault_newest_idx ON jobs (vault_id, create_time DESC, id DESC);
CREATE INDEX jobs_instance_newest_idx ON jobs (backup_instance_id, create_time DESC, id DESC);
CREATE INDEX jobs_state_newest_idx ON jobs (state, create_time DESC, id DESC);
DROP INDEX jobs_instance_idx;

-- Attempts made before the last manual retry: the attempt limit counts
-- from there, so a retried job gets its full budget again.
ALTER TABLE jobs ADD COLUMN attempts_before_retry integer NOT NULL DEFAULT 0;
