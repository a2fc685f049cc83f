-- pgvault state database, version 20: data protection — a floor under
-- retention (keep-min), soft delete of recovery points with a per-vault
-- window, and immutable (locked) vaults.

-- Expiry never removes an instance's newest `keep_min` live points (at
-- least one), so backups failing for longer than the retention period do
-- not eat every point.
ALTER TABLE policies ADD COLUMN keep_min integer NOT NULL DEFAULT 3 CHECK (keep_min >= 1);

-- How long soft-deleted points stay recoverable before the sweeper purges
-- them (at least one day), and when the vault was locked (NULL: not
-- locked). A lock is never removed.
ALTER TABLE vaults ADD COLUMN soft_delete_days integer NOT NULL DEFAULT 14 CHECK (soft_delete_days >= 1);
ALTER TABLE vaults ADD COLUMN lock_time timestamptz;

-- A soft-deleted point: hidden from normal lists and restores, recoverable
-- (undelete) until purge_after, then purged by the sweeper through a DELETE
-- job. soft_deleted_by is the principal of the token that deleted it.
ALTER TABLE recovery_points ADD COLUMN soft_delete_time timestamptz;
ALTER TABLE recovery_points ADD COLUMN soft_deleted_by text;
ALTER TABLE recovery_points ADD COLUMN purge_after timestamptz;
CREATE INDEX recovery_points_purge_idx ON recovery_points (purge_after)
    WHERE purge_after IS NOT NULL AND delete_time IS NULL;
CREATE INDEX recovery_points_instance_snapshot_idx ON recovery_points (backup_instance_id, snapshot_time)
    WHERE delete_time IS NULL;

-- Who asked for a job that removes data: the principal that soft-deleted
-- the point a purge removes (NULL: the sweeper on expiry, or older jobs).
ALTER TABLE jobs ADD COLUMN requested_by text;
