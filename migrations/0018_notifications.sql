-- pgvault state database, version 18: notifications. A vault's channels
-- (webhooks) and the outbox of deliveries to them. Deliveries are written by
-- triggers in the transaction that ends a job or records a skipped slot,
-- whichever code path does it (worker call, reaper, cancel, dead letter,
-- agent sweeper, scheduler), so nothing is lost if the coordinator dies
-- before sending; the notification sender (coordinator::notifications)
-- sends them with retries.

CREATE TABLE notification_channels (
    vault_id       text NOT NULL REFERENCES vaults (id) ON DELETE CASCADE,
    name           text NOT NULL,
    -- http(s) URL; its path and query may hold a token: never listed or logged.
    url            text NOT NULL,
    format         text NOT NULL CHECK (format IN ('GENERIC', 'SLACK')),
    -- Subset of 'failed', 'missed', 'succeeded'.
    events         text[] NOT NULL CHECK (cardinality(events) > 0
                                          AND events <@ ARRAY['failed', 'missed', 'succeeded']),
    -- A stored secret the vault is granted (its latest version signs the body);
    -- NULL: unsigned.
    signing_secret text REFERENCES secrets (id),
    create_time    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (vault_id, name)
);

CREATE TABLE notification_deliveries (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    vault_id        text NOT NULL,
    channel         text NOT NULL,
    -- 'failed', 'missed', 'succeeded' or 'test'.
    event           text NOT NULL,
    -- What the delivery is about, once per channel: 'job/{id}/{attempt}',
    -- 'slot/{instance}/{slot time}' or 'test/{uuid}'.
    subject         text NOT NULL,
    job_id          uuid,
    -- The facts the body is rendered from, fixed when the event happened.
    facts           jsonb NOT NULL,
    state           text NOT NULL DEFAULT 'PENDING' CHECK (state IN ('PENDING', 'DELIVERED', 'FAILED')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    -- Why the last attempt failed (HTTP status or transport error; never the URL).
    last_error      text NOT NULL DEFAULT '',
    create_time     timestamptz NOT NULL DEFAULT now(),
    update_time     timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (vault_id, channel) REFERENCES notification_channels (vault_id, name) ON DELETE CASCADE,
    UNIQUE (vault_id, channel, subject)
);
CREATE INDEX notification_deliveries_due_idx ON notification_deliveries (next_attempt_at) WHERE state = 'PENDING';
CREATE INDEX notification_deliveries_newest_idx ON notification_deliveries (create_time DESC, id DESC);

-- A job reaching FAILED, COMPLETED or COMPLETED_WITH_WARNINGS: one delivery
-- per channel of its vault subscribed to the event. COMPLETED then
-- COMPLETED_WITH_WARNINGS in one transaction updates the same delivery.
CREATE FUNCTION notification_job_ended() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    ev text := CASE WHEN NEW.state = 'FAILED' THEN 'failed'
                    WHEN NEW.state IN ('COMPLETED', 'COMPLETED_WITH_WARNINGS') THEN 'succeeded' END;
BEGIN
    IF ev IS NULL THEN
        RETURN NULL;
    END IF;
    INSERT INTO notification_deliveries (vault_id, channel, event, subject, job_id, facts)
    SELECT c.vault_id, c.name, ev, 'job/' || NEW.id || '/' || NEW.attempt, NEW.id,
           jsonb_build_object(
               'job_id', NEW.id, 'operation', NEW.operation, 'state', NEW.state,
               'attempt', NEW.attempt, 'instance_id', NEW.backup_instance_id,
               'server', i.server_id, 'database', i.database,
               'error_code', NEW.error_code, 'message', NEW.error_message,
               'recommended_action', NEW.error_action,
               'create_time', NEW.create_time, 'start_time', NEW.start_time,
               'end_time', NEW.end_time)
      FROM notification_channels c
      LEFT JOIN backup_instances i ON i.id = NEW.backup_instance_id
     WHERE c.vault_id = NEW.vault_id AND ev = ANY (c.events)
    ON CONFLICT (vault_id, channel, subject) DO UPDATE
       SET facts = EXCLUDED.facts, update_time = now()
     WHERE notification_deliveries.state = 'PENDING';
    RETURN NULL;
END $$;

CREATE TRIGGER jobs_notification_ended AFTER UPDATE OF state ON jobs
    FOR EACH ROW WHEN (OLD.state IS DISTINCT FROM NEW.state
                       AND NEW.state IN ('FAILED', 'COMPLETED', 'COMPLETED_WITH_WARNINGS'))
    EXECUTE FUNCTION notification_job_ended();

-- A slot the scheduler recorded SKIPPED (found later than
-- coordinator.schedule_max_lateness_minutes after its time): 'missed'.
CREATE FUNCTION notification_slot_missed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO notification_deliveries (vault_id, channel, event, subject, facts)
    SELECT c.vault_id, c.name, 'missed', 'slot/' || i.id || '/' || NEW.slot_time,
           jsonb_build_object(
               'instance_id', i.id, 'server', i.server_id, 'database', i.database,
               'state', 'SKIPPED', 'slot_time', NEW.slot_time, 'message', NEW.reason,
               'recommended_action',
               'keep a coordinator running; run pgvault backup now for this instance if a backup is needed before its next slot')
      FROM backup_instances i
      JOIN notification_channels c ON c.vault_id = i.vault_id AND 'missed' = ANY (c.events)
     WHERE i.id = NEW.backup_instance_id
    ON CONFLICT (vault_id, channel, subject) DO NOTHING;
    RETURN NULL;
END $$;

CREATE TRIGGER schedule_runs_notification_missed AFTER INSERT ON schedule_runs
    FOR EACH ROW WHEN (NEW.status = 'SKIPPED')
    EXECUTE FUNCTION notification_slot_missed();
