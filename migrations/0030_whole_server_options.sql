-- pgvault state database, version 30: options of whole-server protection
-- and restore.

-- The server's globals also carry the roles' passwords (as the server
-- stores them: SCRAM or MD5 hashes), asked with --role-passwords and
-- allowed only for encrypted vaults (checked when configured and again
-- when each backup is claimed).
ALTER TABLE server_protections ADD COLUMN role_passwords boolean NOT NULL DEFAULT false;

-- The globals' restore leaves the tablespace definitions out
-- (--no-tablespaces), for a target without their directories.
ALTER TABLE restore_globals ADD COLUMN skip_tablespaces boolean NOT NULL DEFAULT false;
