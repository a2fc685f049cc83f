-- pgvault state database, version 19: per-server connection budgets. Each
-- server bounds the connections all workers and agents open to it at once
-- (max_connections); a claim of a backup or a restore as a database takes
-- slots of its server's budget in the claim's transaction, one row per
-- lease. A row counts only while its job still holds that lease (in
-- progress or cancelling, lease not expired, on the database clock), so a
-- crashed worker frees its slots when its lease expires, even before the
-- reaper deletes the row; completion, failure, take-over and the reaper
-- delete it in their own transactions.

ALTER TABLE servers
    ADD COLUMN max_connections integer NOT NULL DEFAULT 8
        CHECK (max_connections BETWEEN 2 AND 1000);

CREATE TABLE connection_slots (
    -- The claim's lease token: one row per lease (a fan-out sub-task's lease
    -- later takes its own row).
    lease_token uuid PRIMARY KEY,
    job_id      uuid NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    server_id   text NOT NULL REFERENCES servers (id) ON DELETE CASCADE,
    slots       integer NOT NULL CHECK (slots > 0),
    take_time   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX connection_slots_server ON connection_slots (server_id);
CREATE INDEX connection_slots_job ON connection_slots (job_id);
