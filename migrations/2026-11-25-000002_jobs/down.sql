DROP TABLE purge_runs;
DROP TABLE email_verifications;
DROP TABLE outbox;
