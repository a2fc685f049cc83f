-- pgvault state database, version 13: where a finished backup's or
-- restore's time went — the engine's stage split (throughput, phases, the
-- data connections' time by stage, CPU of compression), as the worker
-- reported it with CompleteTask. Kept with the attempt that completed the
-- job; GetJob and WatchJob show it, ListJobs never reads it.
ALTER TABLE job_attempts ADD COLUMN stage_split jsonb;
