DROP INDEX job_runs_tick_key;
DELETE FROM job_runs WHERE job <> 'purge';
ALTER TABLE job_runs DROP COLUMN details;
ALTER TABLE job_runs DROP COLUMN job;
ALTER INDEX job_runs_started_idx RENAME TO purge_runs_started_idx;
ALTER TABLE job_runs RENAME CONSTRAINT job_runs_status_check TO purge_runs_status_check;
ALTER TABLE job_runs RENAME CONSTRAINT job_runs_trigger_check TO purge_runs_trigger_check;
ALTER TABLE job_runs RENAME CONSTRAINT job_runs_pkey TO purge_runs_pkey;
ALTER TABLE job_runs RENAME TO purge_runs;
CREATE UNIQUE INDEX purge_runs_tick_key ON purge_runs (scheduled_for) WHERE trigger = 'schedule';

DROP TABLE signing_keys;
DROP TRIGGER sessions_deleted_live ON sessions;
DROP FUNCTION revoke_deleted_session();
DROP TRIGGER revocations_notify ON revocations;
DROP FUNCTION notify_revocations();
DROP TABLE revocations;
ALTER TABLE sessions DROP COLUMN not_before;
