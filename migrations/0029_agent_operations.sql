-- Verifies and drills through agents (issue 12 follow-up): a job's agent is
-- fixed from its route when it is created (`JobSpec::route`), and a VERIFY
-- reads its point through the agent of the instance's server, a DRILL
-- writes its scratch database through the agent of the drill server — as a
-- restore as files and a restore as a database do. Migration 0012 allowed an
-- agent on backups and restores only, so such a verify or drill could not
-- be created at all, and a backup whose completion queues a drill into an
-- agent-bound drill server could not complete. Lifecycle jobs (tier moves,
-- rehydrates, deletes, copies) touch datastores only and stay on the
-- workers.

ALTER TABLE jobs
    DROP CONSTRAINT jobs_agent_check,
    ADD CONSTRAINT jobs_agent_check CHECK
        (agent_id IS NULL
         OR operation IN ('SCHEDULED_BACKUP', 'ON_DEMAND_BACKUP', 'RESTORE', 'VERIFY', 'DRILL'));
