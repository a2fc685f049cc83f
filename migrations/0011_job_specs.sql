-- pgvault state database, version 11: a job row is what its operation needs.
--
-- `jobs` keeps what every job has (operation, state, vault, instance,
-- attempts, lease, progress, error, times, the job it waits for) and a few
-- small facts of one kind of operation, each CHECK-constrained to it:
--   recovery_point_id  the existing point a restore reads or a lifecycle job
--                      moves, copies or deletes (never a backup's point);
--   produced_point_id  the point a backup produced (set on completion);
--   retention_rule     the rule an on-demand backup is kept by;
--   lifecycle_stage    the point's stage a TIER_MOVE, REHYDRATE or DELETE
--                      job carries out (as lifecycle_runs.stage);
--   rehydrate_days     how long a REHYDRATE job's copy is kept.
-- They stay columns because only a CHECK on the row itself can tie them to
-- the operation, backups are nine jobs in ten (a side table would add a row
-- and a lookup to the scheduler's bursts and every job listing), and the
-- point a job works on is what "no deletion while a restore of the point
-- runs" asks about across operations.
-- Everything else a restore needs moves to its restore_targets row (every
-- restore now has one), and where an attempt writes moves to that attempt's
-- job_attempts row.
-- Chunk sub-tasks (fan-out) will be rows of a child table keyed by
-- (job, chunk) with their own lease, not jobs.
-- Existing rows keep their text: nothing stored as an enum is rewritten.

-- A backup's produced point leaves recovery_point_id. Backups are most
-- rows: the column is renamed (no row rewritten) and the other operations'
-- points, a small share, move back into a new recovery_point_id.
DROP INDEX jobs_point_idx;
ALTER TABLE jobs RENAME COLUMN recovery_point_id TO produced_point_id;
ALTER TABLE jobs ADD COLUMN recovery_point_id uuid;
UPDATE jobs SET recovery_point_id = produced_point_id, produced_point_id = NULL
 WHERE operation NOT IN ('SCHEDULED_BACKUP', 'ON_DEMAND_BACKUP');
CREATE INDEX jobs_point_idx ON jobs (recovery_point_id) WHERE recovery_point_id IS NOT NULL;

-- An on-demand backup without a rule was kept by DEFAULT; a scheduled
-- backup's rule was never read (it is tagged on completion).
UPDATE jobs SET retention_rule = 'DEFAULT' WHERE operation = 'ON_DEMAND_BACKUP' AND retention_rule IS NULL;
UPDATE jobs SET retention_rule = NULL WHERE operation <> 'ON_DEMAND_BACKUP' AND retention_rule IS NOT NULL;

-- Every restore has its target row, holding where it writes.
ALTER TABLE restore_targets
    ADD COLUMN target_server_id  text REFERENCES servers (id),
    ADD COLUMN target_database   text,
    -- The stored secret (latest version), and/or the reference when it is
    -- not that: "secret://NAME/VERSION", "env://VAR", "file:///path".
    ADD COLUMN target_secret_id  text REFERENCES secrets (id),
    ADD COLUMN target_secret_ref text;
-- Restores queued before restore targets existed restore a whole database.
INSERT INTO restore_targets (job_id, kind)
SELECT j.id, 'DATABASE' FROM jobs j
 WHERE j.operation = 'RESTORE' AND NOT EXISTS (SELECT 1 FROM restore_targets t WHERE t.job_id = j.id);
UPDATE restore_targets t
   SET target_server_id = j.target_server_id, target_database = j.target_database,
       target_secret_id = j.target_secret_id, target_secret_ref = j.target_secret_ref
  FROM jobs j
 WHERE j.id = t.job_id AND t.kind = 'DATABASE';
ALTER TABLE restore_targets
    DROP CONSTRAINT restore_targets_check,
    ADD CONSTRAINT restore_targets_shape CHECK (CASE kind
        WHEN 'DATABASE' THEN target_server_id IS NOT NULL AND target_database IS NOT NULL
                         AND (target_secret_id IS NOT NULL OR target_secret_ref IS NOT NULL)
                         AND target_url IS NULL AND target_file IS NULL
                         AND output_size IS NULL AND output_sha256 IS NULL
        ELSE target_url IS NOT NULL AND target_file IS NOT NULL
             AND target_server_id IS NULL AND target_database IS NULL
             AND target_secret_id IS NULL AND target_secret_ref IS NULL
        END);

-- Where an attempt writes is a fact of that attempt.
ALTER TABLE job_attempts
    -- Backups: the recovery point the attempt writes.
    ADD COLUMN point_id      uuid,
    -- The datastore root and the directory under it the attempt writes.
    ADD COLUMN datastore_url text,
    ADD COLUMN prefix        text,
    ADD CONSTRAINT job_attempts_target_check CHECK ((datastore_url IS NULL) = (prefix IS NULL)
                                                    AND (point_id IS NULL OR prefix IS NOT NULL));
-- Attempts running since before attempt history existed get their row.
INSERT INTO job_attempts (job_id, attempt, worker, start_time)
SELECT id, attempt, coalesce(lease_owner, ''), coalesce(start_time, now()) FROM jobs
 WHERE state IN ('IN_PROGRESS', 'CANCELLING')
ON CONFLICT (job_id, attempt) DO NOTHING;
-- A QUEUED job's target belongs to an attempt that already ended (and was
-- recorded as garbage then): only other jobs' targets move.
UPDATE job_attempts a
   SET point_id = CASE WHEN j.operation IN ('SCHEDULED_BACKUP', 'ON_DEMAND_BACKUP') THEN j.attempt_point_id END,
       datastore_url = j.attempt_datastore, prefix = j.attempt_prefix
  FROM jobs j
 WHERE a.job_id = j.id AND a.attempt = j.attempt
   AND j.state <> 'QUEUED' AND j.attempt_datastore IS NOT NULL AND j.attempt_prefix IS NOT NULL;

-- Lifecycle jobs have always been written with their stage; a rehydrate
-- with its days. Older rows without them get the values they meant.
UPDATE jobs SET lifecycle_stage = CASE operation WHEN 'REHYDRATE' THEN 'REHYDRATE' ELSE 'STANDARD_EXPIRY' END
 WHERE operation IN ('TIER_MOVE', 'REHYDRATE', 'DELETE') AND lifecycle_stage IS NULL;
UPDATE jobs SET rehydrate_days = 15 WHERE operation = 'REHYDRATE' AND rehydrate_days IS NULL;
UPDATE jobs SET lifecycle_stage = NULL, rehydrate_days = NULL
 WHERE operation NOT IN ('TIER_MOVE', 'REHYDRATE', 'DELETE')
   AND (lifecycle_stage IS NOT NULL OR rehydrate_days IS NOT NULL);

ALTER TABLE jobs
    DROP COLUMN target_server_id,
    DROP COLUMN target_database,
    DROP COLUMN target_secret_id,
    DROP COLUMN target_secret_ref,
    DROP COLUMN attempt_point_id,
    DROP COLUMN attempt_datastore,
    DROP COLUMN attempt_prefix,
    ADD CONSTRAINT jobs_operation_check CHECK (operation IN
        ('SCHEDULED_BACKUP', 'ON_DEMAND_BACKUP', 'RESTORE', 'TIER_MOVE', 'REHYDRATE', 'DELETE')),
    ADD CONSTRAINT jobs_state_check CHECK (state IN
        ('QUEUED', 'IN_PROGRESS', 'COMPLETED', 'COMPLETED_WITH_WARNINGS', 'FAILED', 'CANCELLING', 'CANCELLED')),
    -- Every operation so far is about one backup instance.
    ADD CONSTRAINT jobs_instance_check CHECK (backup_instance_id IS NOT NULL),
    ADD CONSTRAINT jobs_recovery_point_check CHECK
        ((recovery_point_id IS NULL) = (operation IN ('SCHEDULED_BACKUP', 'ON_DEMAND_BACKUP'))),
    ADD CONSTRAINT jobs_produced_point_check CHECK
        (produced_point_id IS NULL OR operation IN ('SCHEDULED_BACKUP', 'ON_DEMAND_BACKUP')),
    ADD CONSTRAINT jobs_retention_rule_check CHECK
        ((retention_rule IS NOT NULL) = (operation = 'ON_DEMAND_BACKUP')
         AND coalesce(retention_rule IN ('DEFAULT', 'WEEKLY', 'MONTHLY', 'YEARLY'), true)),
    ADD CONSTRAINT jobs_lifecycle_stage_check CHECK (CASE operation
        WHEN 'TIER_MOVE' THEN coalesce(lifecycle_stage = 'STANDARD_EXPIRY', false)
        WHEN 'REHYDRATE' THEN coalesce(lifecycle_stage = 'REHYDRATE', false)
        WHEN 'DELETE' THEN coalesce(lifecycle_stage IN ('STANDARD_EXPIRY', 'ARCHIVE_EXPIRY')
                                    OR lifecycle_stage LIKE 'REHYDRATED\_EXPIRY/_%', false)
        ELSE lifecycle_stage IS NULL END),
    ADD CONSTRAINT jobs_rehydrate_days_check CHECK
        ((rehydrate_days IS NOT NULL) = (operation = 'REHYDRATE') AND coalesce(rehydrate_days > 0, true)),
    ADD CONSTRAINT jobs_waits_for_check CHECK (waits_for_job_id IS NULL OR operation = 'RESTORE');

-- Restores, tier moves, rehydrates and deletes of a point are still found
-- through jobs_point_idx (recovery_point_id, recreated above).
