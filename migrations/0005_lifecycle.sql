-- pgvault state database, version 5: lifecycle of recovery points — tier
-- moves to archive, deletion at expiry, rehydrated copies of archive points
-- and restores waiting for their rehydrate.

-- One row per (recovery point, lifecycle stage) the sweeper acted on, with
-- the job it created. The primary key is what makes a stage fire at most
-- once, whichever coordinator and however many restarts; a row whose job
-- failed may be taken over by a new job (see store::lifecycle::claim).
-- No foreign key to recovery_points: a deleted point's row is dropped, its
-- jobs stay readable.
CREATE TABLE lifecycle_runs (
    recovery_point_id uuid NOT NULL,
    -- STANDARD_EXPIRY, ARCHIVE_EXPIRY or REHYDRATED_EXPIRY/<rehydrate job id>.
    stage             text NOT NULL,
    job_id            uuid NOT NULL REFERENCES jobs (id),
    create_time       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (recovery_point_id, stage)
);
CREATE INDEX lifecycle_runs_job_idx ON lifecycle_runs (job_id);

-- Lifecycle jobs: which stage of the point they carry out (the same text as
-- lifecycle_runs.stage; REHYDRATE jobs: 'REHYDRATE').
ALTER TABLE jobs ADD COLUMN lifecycle_stage text;
-- A job held back until another completes (a restore from an archive point
-- waits for its rehydrate): no outbox row is written until then.
ALTER TABLE jobs ADD COLUMN waits_for_job_id uuid REFERENCES jobs (id);
-- REHYDRATE jobs: how long the rehydrated copy is kept, in days.
ALTER TABLE jobs ADD COLUMN rehydrate_days integer;
CREATE INDEX jobs_waits_for_idx ON jobs (waits_for_job_id) WHERE waits_for_job_id IS NOT NULL;
CREATE INDEX jobs_point_idx ON jobs (recovery_point_id) WHERE recovery_point_id IS NOT NULL;

-- The rehydrated copy of an archive point in the standard datastore, kept
-- until rehydrated_until (then deleted by the sweeper).
ALTER TABLE recovery_points ADD COLUMN rehydrated_datastore text;
ALTER TABLE recovery_points ADD COLUMN rehydrated_prefix text;
ALTER TABLE recovery_points ADD COLUMN rehydrated_until timestamptz;
CREATE INDEX recovery_points_expire_idx ON recovery_points (expire_time);

-- Deleted points keep their row (hidden from the API) so the job history
-- stays readable and "first backup of its week/month/year" still sees them.
ALTER TABLE recovery_points ADD COLUMN delete_time timestamptz;
