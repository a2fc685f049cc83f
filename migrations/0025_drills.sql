-- Restore drills (issue 18, part 8): a DRILL job restores a recovery point
-- into a scratch database on a drill server (its target is a
-- restore_targets row of kind DATABASE: server, scratch database, secret),
-- checks every table's rows and row checksum against the manifest, drops
-- the scratch database, and records the result on the point.

ALTER TABLE jobs
    DROP CONSTRAINT jobs_operation_check,
    ADD CONSTRAINT jobs_operation_check CHECK (operation IN
        ('SCHEDULED_BACKUP', 'ON_DEMAND_BACKUP', 'RESTORE', 'TIER_MOVE', 'REHYDRATE', 'DELETE', 'VERIFY', 'COPY', 'DRILL'));

-- At most one drill of a point queued or running at a time.
CREATE UNIQUE INDEX jobs_one_drill_per_point_idx ON jobs (recovery_point_id)
    WHERE operation = 'DRILL' AND state IN ('QUEUED', 'IN_PROGRESS', 'CANCELLING');

-- The last drill of the point that ended: when, how, on which server, what
-- it checked (tables, rows, whether checksums were compared or row counts
-- only), its failure code and the job. NULL: never drilled.
ALTER TABLE recovery_points
    ADD COLUMN last_drill_at         timestamptz,
    ADD COLUMN last_drill_result     text CHECK (last_drill_result IN ('OK', 'FAILED')),
    ADD COLUMN last_drill_error_code text,
    ADD COLUMN last_drill_job_id     uuid,
    ADD COLUMN last_drill_server     text,
    ADD COLUMN last_drill_tables     bigint,
    ADD COLUMN last_drill_rows       bigint,
    ADD COLUMN last_drill_checksums  boolean,
    ADD CONSTRAINT recovery_points_drill_check CHECK
        ((last_drill_at IS NULL) = (last_drill_result IS NULL)
         AND (last_drill_error_code IS NULL OR last_drill_result = 'FAILED'));

-- The policy's drill: the server and secret scratch databases are made
-- with, and after every Nth completed backup of an instance. Server empty:
-- no drills.
ALTER TABLE policies
    ADD COLUMN drill_server text NOT NULL DEFAULT '',
    ADD COLUMN drill_secret text NOT NULL DEFAULT '',
    ADD COLUMN drill_every  integer NOT NULL DEFAULT 0 CHECK (drill_every >= 0),
    ADD CONSTRAINT policies_drill_check CHECK
        ((drill_server = '') = (drill_secret = '') AND (drill_server = '') = (drill_every = 0));
