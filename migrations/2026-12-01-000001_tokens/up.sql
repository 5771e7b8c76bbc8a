-- Tokens other services can trust: signing keys, stale tokens per session,
-- the revocation feed, and runs of any scheduled job (purge, key rotation).

-- Every access token of a session minted before `not_before` (epoch
-- seconds, like `iat`) is dead. A change that makes a session's tokens
-- stale moves it to the next whole second (and past its previous value);
-- one that ends the session also revokes it. See docs/tokens.md.
ALTER TABLE sessions ADD COLUMN not_before bigint NOT NULL DEFAULT 0;

-- The revocation feed (`GET /.well-known/revocations`). Rows are inserted
-- by the shared session functions in the same transaction as the change,
-- under a transaction-level advisory lock taken right before the insert,
-- so cursor order is commit order: a reader that has seen cursor N never
-- later finds a committed row below N. Kept at least one access-token
-- lifetime (the purge deletes older rows by `created_at`).
CREATE TABLE revocations (
    cursor     bigserial PRIMARY KEY,
    sid        uuid NOT NULL,
    not_before bigint NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX revocations_created_at_idx ON revocations (created_at);

-- Wake the API replicas' feed publishers at commit (they read the new rows
-- by cursor and publish them on Redis). One notification per transaction.
CREATE FUNCTION notify_revocations() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('gatehouse_revocations', '');
    RETURN NULL;
END;
$$;
CREATE TRIGGER revocations_notify AFTER INSERT ON revocations
    FOR EACH STATEMENT EXECUTE FUNCTION notify_revocations();

-- A live session deleted (with its user: account deletion, the purge of
-- unverified accounts) is published like a revoked one, whoever deletes
-- it. Same advisory lock as the application's inserts (FEED_LOCK_KEY in
-- shared/src/models/revocation.rs): cursor order stays commit order.
CREATE FUNCTION revoke_deleted_session() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(7449363237707282027);
    INSERT INTO revocations (sid, not_before) VALUES (
        OLD.id,
        GREATEST(OLD.not_before + 1, floor(extract(epoch FROM clock_timestamp()))::bigint + 1));
    RETURN NULL;
END;
$$;
CREATE TRIGGER sessions_deleted_live AFTER DELETE ON sessions
    FOR EACH ROW WHEN (OLD.revoked_at IS NULL AND OLD.expires_at > now())
    EXECUTE FUNCTION revoke_deleted_session();

-- Ed25519 signing keys. The public half is served as a JWK; the private
-- half (PKCS#8) is encrypted with AES-256-GCM under a key derived (HKDF-
-- SHA256) from JWT_SECRET, with the kid as associated data, and erased
-- once the key is retired. `kid` is the RFC 7638 thumbprint of the JWK.
--   next     published, not signing yet (waits one JWKS cache period);
--   current  signs new access tokens (exactly one);
--   previous no longer signs, published until its last token expired;
--   retired  no longer published.
CREATE TABLE signing_keys (
    kid            text PRIMARY KEY,
    algorithm      text NOT NULL CHECK (algorithm = 'EdDSA'),
    state          text NOT NULL CHECK (state IN ('next', 'current', 'previous', 'retired')),
    public_jwk     jsonb NOT NULL,
    private_key    bytea,
    created_at     timestamptz NOT NULL DEFAULT now(),
    activated_at   timestamptz,
    deactivated_at timestamptz,
    retired_at     timestamptz,
    CHECK ((state = 'retired') = (private_key IS NULL))
);
CREATE UNIQUE INDEX signing_keys_one_current_idx ON signing_keys (state) WHERE state = 'current';
CREATE UNIQUE INDEX signing_keys_one_next_idx ON signing_keys (state) WHERE state = 'next';

-- Runs of every scheduled job, not only the purge. A scheduled tick of a
-- job runs exactly once however many workers fire it: the partial unique
-- index on (job, scheduled_for) lets one insert win.
ALTER TABLE purge_runs RENAME TO job_runs;
ALTER TABLE job_runs RENAME CONSTRAINT purge_runs_pkey TO job_runs_pkey;
ALTER TABLE job_runs RENAME CONSTRAINT purge_runs_trigger_check TO job_runs_trigger_check;
ALTER TABLE job_runs RENAME CONSTRAINT purge_runs_status_check TO job_runs_status_check;
ALTER INDEX purge_runs_started_idx RENAME TO job_runs_started_idx;
ALTER TABLE job_runs ADD COLUMN job text NOT NULL DEFAULT 'purge';
ALTER TABLE job_runs ALTER COLUMN job DROP DEFAULT;
-- What a run did, for jobs whose outcome is not row counts (key rotation).
ALTER TABLE job_runs ADD COLUMN details jsonb;
DROP INDEX purge_runs_tick_key;
CREATE UNIQUE INDEX job_runs_tick_key ON job_runs (job, scheduled_for) WHERE trigger = 'schedule';
