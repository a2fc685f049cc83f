-- pgvault state database, version 9: dead letters — task messages the queue
-- gave up on (rejected by a worker, or over the delivery limit), drained from
-- the dead-letter queue by the coordinators so they can be listed through the
-- API. Task messages hold a job id and an attempt only; other payloads are
-- kept as size, hash and a 64-byte escaped preview, never whole.
CREATE TABLE dead_letters (
    id             uuid PRIMARY KEY,
    -- Message id (or '') and payload SHA-256: a redelivery of the same dead
    -- letter (a coordinator died between recording and acking it) records
    -- nothing new.
    dedupe_key     text NOT NULL UNIQUE,
    receive_time   timestamptz NOT NULL DEFAULT now(),
    -- The queue it died in.
    queue          text NOT NULL,
    -- rejected, delivery_limit, expired, maxlen or unknown.
    reason         text NOT NULL,
    -- Deliveries before it died, when the broker said.
    delivery_count integer,
    message_id     text,
    payload_size   bigint NOT NULL,
    payload_sha256 text NOT NULL,
    -- Task messages: the job and attempt named (no foreign key: the job may
    -- not exist, and dead letters outlive deleted jobs).
    job_id         uuid,
    attempt        integer,
    -- Other payloads: the first 64 bytes, escaped.
    preview        text NOT NULL DEFAULT '',
    -- The job's state when the dead letter was recorded, when the job exists.
    job_state      text,
    -- Whether recording it failed the job (still queued for this attempt).
    job_failed     boolean NOT NULL DEFAULT false
);
CREATE INDEX dead_letters_newest_idx ON dead_letters (receive_time DESC, id DESC);
