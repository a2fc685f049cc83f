-- Weekly restore drills (issue 18, part 8): a policy with a drill server
-- may drill its instances' newest points on a weekly schedule as well as
-- (or instead of) after every Nth backup.

-- The policy's drill schedule (ISO weekdays, "HH:MM", IANA zone); all
-- NULL: no scheduled drills. A drill (server and secret set) needs a
-- frequency, a schedule or both; no server: neither. Existing rows (server,
-- secret and every all set or all empty) stay valid.
ALTER TABLE policies
    ADD COLUMN drill_weekdays    smallint[],
    ADD COLUMN drill_time_of_day text,
    ADD COLUMN drill_time_zone   text,
    DROP CONSTRAINT policies_drill_check,
    ADD CONSTRAINT policies_drill_check CHECK
        ((drill_weekdays IS NULL) = (drill_time_of_day IS NULL)
         AND (drill_weekdays IS NULL) = (drill_time_zone IS NULL)
         AND (drill_server = '') = (drill_secret = '')
         AND (drill_server = '') = (drill_every = 0 AND drill_weekdays IS NULL));

-- Drill slots of a policy the scheduler has claimed: one pass per slot,
-- whichever coordinator holds the scheduler lock.
CREATE TABLE policy_drill_runs (
    vault_id    text NOT NULL,
    policy_id   text NOT NULL,
    slot        timestamptz NOT NULL,
    create_time timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (vault_id, policy_id, slot),
    FOREIGN KEY (vault_id, policy_id) REFERENCES policies (vault_id, id) ON DELETE CASCADE
);
