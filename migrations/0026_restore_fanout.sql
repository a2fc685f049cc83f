-- pgvault state database, version 26: restores fanned out across workers.
-- A chunk sub-task is now one of two kinds: DUMP (a backup's planned object,
-- dumped on the leader's exported snapshot) or LOAD (a restore's planned
-- load, COPY'd into the target database the leader created and filled with
-- pre-data). A load has no snapshot. `fanout_requests` holds what a user
-- asked of either kind of job (`restore database … --workers N` too).
ALTER TABLE chunk_tasks
    ADD COLUMN kind text NOT NULL DEFAULT 'DUMP' CHECK (kind IN ('DUMP', 'LOAD')),
    ALTER COLUMN snapshot_id DROP NOT NULL,
    ADD CONSTRAINT chunk_tasks_dump_snapshot CHECK (kind <> 'DUMP' OR snapshot_id IS NOT NULL);
