-- pgvault state database, version 27: progress of a fanned-out backup's
-- chunks, for the fleet's combined throughput in job details (`job watch`).
-- A claim stamps claim_time and starts the chunk's counts over; a helper's
-- chunk heartbeat records the uncompressed COPY bytes and rows read so far;
-- a stored chunk records its totals (the leader's chunks report only then).

ALTER TABLE chunk_tasks
    ADD COLUMN claim_time timestamptz,
    ADD COLUMN bytes_done bigint NOT NULL DEFAULT 0 CHECK (bytes_done >= 0),
    ADD COLUMN rows_done  bigint NOT NULL DEFAULT 0 CHECK (rows_done >= 0);
