-- pgvault state database, version 24: copies of recovery points to a
-- second datastore (3-2-1). A policy may name a copy datastore and how long
-- copies there are kept; after each completed backup a COPY job copies the
-- point there (verified), and each copy expires by its own retention.

-- Both empty: the policy makes no copies.
ALTER TABLE policies
    ADD COLUMN copy_datastore text NOT NULL DEFAULT '',
    ADD COLUMN copy_retention text NOT NULL DEFAULT '',
    ADD CONSTRAINT policies_copy_check CHECK ((copy_datastore = '') = (copy_retention = ''));

-- One row per copy of a point written and verified in another datastore
-- (the point's own location stays on recovery_points). The row is written
-- when the COPY job completes, that is once the copy's manifest is durable;
-- a copy's DELETE job marks it DELETED (the row stays for history).
CREATE TABLE recovery_point_copies (
    recovery_point_id uuid NOT NULL REFERENCES recovery_points (id),
    datastore_url     text NOT NULL,
    prefix            text NOT NULL,
    state             text NOT NULL CHECK (state IN ('COPIED', 'DELETED')),
    -- The COPY job that wrote it.
    job_id            uuid NOT NULL,
    copied_at         timestamptz NOT NULL,
    expires_at        timestamptz NOT NULL,
    delete_time       timestamptz,
    PRIMARY KEY (recovery_point_id, datastore_url),
    CHECK ((state = 'DELETED') = (delete_time IS NOT NULL))
);
CREATE INDEX recovery_point_copies_due_idx ON recovery_point_copies (expires_at)
    WHERE state = 'COPIED';

-- A COPY job carries its target in its stage ('COPY/<datastore url>'); the
-- DELETE of an expired copy in 'COPY_EXPIRY/<datastore url>'. Both are
-- lifecycle_runs stages, so each happens once per point and datastore.
ALTER TABLE jobs
    DROP CONSTRAINT jobs_operation_check,
    ADD CONSTRAINT jobs_operation_check CHECK (operation IN
        ('SCHEDULED_BACKUP', 'ON_DEMAND_BACKUP', 'RESTORE', 'TIER_MOVE', 'REHYDRATE', 'DELETE', 'VERIFY', 'COPY')),
    DROP CONSTRAINT jobs_lifecycle_stage_check,
    ADD CONSTRAINT jobs_lifecycle_stage_check CHECK (CASE operation
        WHEN 'TIER_MOVE' THEN coalesce(lifecycle_stage = 'STANDARD_EXPIRY', false)
        WHEN 'REHYDRATE' THEN coalesce(lifecycle_stage = 'REHYDRATE', false)
        WHEN 'COPY' THEN coalesce(lifecycle_stage LIKE 'COPY/_%', false)
        WHEN 'DELETE' THEN coalesce(lifecycle_stage IN ('STANDARD_EXPIRY', 'ARCHIVE_EXPIRY')
                                    OR lifecycle_stage LIKE 'REHYDRATED\_EXPIRY/_%'
                                    OR lifecycle_stage LIKE 'COPY\_EXPIRY/_%', false)
        ELSE lifecycle_stage IS NULL END);

-- A restore may read a copy instead of the point's own location (NULL:
-- the point itself).
ALTER TABLE restore_targets ADD COLUMN copy_datastore text;
