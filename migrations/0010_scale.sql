-- pgvault state database, version 10: `job list --operation` stays
-- index-backed with millions of rows (vault, instance and state have theirs
-- since version 7; the default and time-range listings use jobs_newest_idx).
CREATE INDEX jobs_operation_newest_idx ON jobs (operation, create_time DESC, id DESC);
