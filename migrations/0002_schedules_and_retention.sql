-- pgvault state database, version 2: schedule runs (exactly one per instance
-- and slot), when an instance's schedule counts from, and what retention
-- needs on each recovery point.

-- One row per (instance, slot) the scheduler acted on: QUEUED with the job it
-- created, or SKIPPED with the reason. The primary key is what makes a slot
-- fire at most once, whichever coordinator and however many restarts.
CREATE TABLE schedule_runs (
    backup_instance_id uuid NOT NULL REFERENCES backup_instances (id) ON DELETE CASCADE,
    slot_time          timestamptz NOT NULL,
    status             text NOT NULL CHECK (status IN ('QUEUED', 'SKIPPED')),
    job_id             uuid REFERENCES jobs (id),
    reason             text NOT NULL DEFAULT '',
    create_time        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (backup_instance_id, slot_time)
);

-- Slots before this instant are never run (set on configure, policy change
-- and resume), so a new or resumed instance does not back up a past slot.
ALTER TABLE backup_instances ADD COLUMN schedule_since timestamptz NOT NULL DEFAULT now();

-- The archive period of the point's rule, fixed when it was tagged
-- (empty: deleted at standard expiry).
ALTER TABLE recovery_points ADD COLUMN archive_duration text NOT NULL DEFAULT '';
