-- Transactional outbox: every job is written here in the same transaction as
-- the change that causes it, then relayed to Redis. Nothing is lost if Redis
-- is down at commit time or a worker dies mid-job.
CREATE TABLE outbox (
    id           uuid PRIMARY KEY,
    queue        text NOT NULL,
    payload      jsonb NOT NULL,
    user_id      uuid,
    created_at   timestamptz NOT NULL DEFAULT now(),
    enqueued_at  timestamptz,
    attempts     integer NOT NULL DEFAULT 0,
    completed_at timestamptz
);
CREATE INDEX outbox_pending_idx ON outbox (created_at) WHERE completed_at IS NULL;
CREATE INDEX outbox_user_idx ON outbox (user_id, created_at);
CREATE INDEX outbox_completed_idx ON outbox (completed_at) WHERE completed_at IS NOT NULL;

-- The current verification code and link of a user; only hashes are stored.
CREATE TABLE email_verifications (
    user_id         uuid PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    code_hash       text NOT NULL,
    code_expires_at timestamptz NOT NULL,
    link_hash       text NOT NULL,
    link_expires_at timestamptz NOT NULL,
    attempts        integer NOT NULL DEFAULT 0,
    job_id          uuid NOT NULL,
    requested_at    timestamptz NOT NULL,
    sent_at         timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX email_verifications_link_hash_key ON email_verifications (link_hash);
CREATE INDEX email_verifications_link_expires_idx ON email_verifications (link_expires_at);

-- Every executed purge run. The partial unique index makes a scheduled tick
-- run exactly once, however many worker replicas fire it.
CREATE TABLE purge_runs (
    id               uuid PRIMARY KEY,
    trigger          text NOT NULL CHECK (trigger IN ('schedule', 'manual')),
    scheduled_for    timestamptz,
    dry_run          boolean NOT NULL DEFAULT false,
    status           text NOT NULL CHECK (status IN ('running', 'succeeded', 'failed')),
    started_at       timestamptz NOT NULL DEFAULT now(),
    finished_at      timestamptz,
    users_deleted    bigint NOT NULL DEFAULT 0,
    sessions_deleted bigint NOT NULL DEFAULT 0,
    codes_deleted    bigint NOT NULL DEFAULT 0,
    error            text,
    worker           text NOT NULL,
    requested_by     uuid
);
CREATE UNIQUE INDEX purge_runs_tick_key ON purge_runs (scheduled_for) WHERE trigger = 'schedule';
CREATE INDEX purge_runs_started_idx ON purge_runs (started_at DESC);
