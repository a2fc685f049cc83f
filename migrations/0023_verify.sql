-- Verify (issue 18, part 4): a VERIFY job reads every object of one
-- recovery point and checks it against the manifest; its result is kept on
-- the point. A policy may verify every point of its instances on a
-- schedule of its own.

ALTER TABLE jobs
    DROP CONSTRAINT jobs_operation_check,
    ADD CONSTRAINT jobs_operation_check CHECK (operation IN
        ('SCHEDULED_BACKUP', 'ON_DEMAND_BACKUP', 'RESTORE', 'TIER_MOVE', 'REHYDRATE', 'DELETE', 'VERIFY'));

-- The last verify of the point that ended: when, how, its failure code
-- and the job. NULL: never verified.
ALTER TABLE recovery_points
    ADD COLUMN last_verified_at       timestamptz,
    ADD COLUMN last_verify_result     text CHECK (last_verify_result IN ('OK', 'FAILED')),
    ADD COLUMN last_verify_error_code text,
    ADD COLUMN last_verify_job_id     uuid,
    ADD CONSTRAINT recovery_points_verify_check CHECK
        ((last_verified_at IS NULL) = (last_verify_result IS NULL)
         AND (last_verify_error_code IS NULL OR last_verify_result = 'FAILED'));

-- At most one verify job of a point queued or running at a time.
CREATE UNIQUE INDEX jobs_one_verify_per_point_idx ON jobs (recovery_point_id)
    WHERE operation = 'VERIFY' AND state IN ('QUEUED', 'IN_PROGRESS', 'CANCELLING');

-- The policy's verify schedule (ISO weekdays, "HH:MM", IANA zone); all
-- NULL: no scheduled verify.
ALTER TABLE policies
    ADD COLUMN verify_weekdays    smallint[],
    ADD COLUMN verify_time_of_day text,
    ADD COLUMN verify_time_zone   text,
    ADD CONSTRAINT policies_verify_check CHECK
        ((verify_weekdays IS NULL) = (verify_time_of_day IS NULL)
         AND (verify_weekdays IS NULL) = (verify_time_zone IS NULL));

-- Verify slots of a policy the scheduler has claimed: one pass per slot,
-- whichever coordinator holds the scheduler lock.
CREATE TABLE policy_verify_runs (
    vault_id    text NOT NULL,
    policy_id   text NOT NULL,
    slot        timestamptz NOT NULL,
    create_time timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (vault_id, policy_id, slot),
    FOREIGN KEY (vault_id, policy_id) REFERENCES policies (vault_id, id) ON DELETE CASCADE
);
