-- What a restore job writes and which part of the recovery point: one row per
-- restore job (jobs.operation = 'RESTORE'). A separate table keeps the jobs
-- row about lifecycle (lease, attempts, progress) and the restore's own
-- facts here.
CREATE TABLE restore_targets (
    job_id           uuid PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
    -- 'DATABASE' (jobs.target_server_id / target_database say where) or 'FILES'.
    kind             text NOT NULL CHECK (kind IN ('DATABASE', 'FILES')),
    -- FILES: datastore URL of the destination directory and the file's name.
    target_url       text,
    target_file      text,
    -- Selective restore; both empty means everything.
    schemas          text[] NOT NULL DEFAULT '{}',
    tables           text[] NOT NULL DEFAULT '{}',
    -- Set on completion: the file written (FILES) and what a selective
    -- restore left out (the job then completes with warnings).
    output_size      bigint,
    output_sha256    text,
    warnings         text[] NOT NULL DEFAULT '{}',
    CHECK (kind <> 'FILES' OR (target_url IS NOT NULL AND target_file IS NOT NULL))
);
