-- pgvault state database, version 14: indexes for /metrics. The leader's
-- metrics feed reads jobs and attempts that ended since its last pass; these
-- keep that a range scan however long the history grows.

CREATE INDEX jobs_end_time_idx ON jobs (end_time) WHERE end_time IS NOT NULL;
CREATE INDEX job_attempts_end_time_idx ON job_attempts (end_time) WHERE end_time IS NOT NULL;
