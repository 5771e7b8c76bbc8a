-- A job claims its outbox row before it does anything (issue 11 item 8):
-- when Redis delivers the same job twice, only the claim's winner sends.
-- A claim older than its lease (the job's time limit plus a margin) is
-- stale: its holder died, and the next delivery may take it over.
ALTER TABLE outbox ADD COLUMN claimed_at timestamptz;
ALTER TABLE outbox ADD COLUMN claimed_by text;
