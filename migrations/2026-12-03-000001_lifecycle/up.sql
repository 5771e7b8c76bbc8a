-- Account lifecycle: disabling, the purge reminder, password resets and
-- email changes. Every one-time secret is stored only as a keyed hash
-- (HMAC-SHA256 under a key derived from JWT_SECRET).

-- A disabled account keeps its data but cannot log in or refresh.
ALTER TABLE users ADD COLUMN is_active boolean NOT NULL DEFAULT true;
-- When the purge reminder was queued: set once, by a conditional UPDATE in
-- the transaction that enqueues the email, so each account gets one.
ALTER TABLE users ADD COLUMN reminded_at timestamptz;
CREATE INDEX users_active_created_at_idx ON users (is_active, created_at DESC, id DESC);

-- The current password reset of a user. A new request replaces the row
-- (new `job_id`, token cleared), which kills the older token at once; the
-- worker of that job fills in the token hash and sends the email.
CREATE TABLE password_resets (
    user_id      uuid PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    job_id       uuid NOT NULL,
    token_hash   text,
    expires_at   timestamptz,
    requested_at timestamptz NOT NULL DEFAULT now(),
    sent_at      timestamptz,
    used_at      timestamptz
);
CREATE UNIQUE INDEX password_resets_token_hash_key ON password_resets (token_hash);

-- A requested email change. The confirmation (link + 6-digit code) goes to
-- the new address, the notice with a revert link to the old one; each has
-- its own job and secret (a redelivered job whose outbox row is complete
-- sends nothing). The revert link works for 7 days after `requested_at`.
-- The user row keeps the old address until the change is confirmed.
CREATE TABLE email_changes (
    id                 uuid PRIMARY KEY,
    user_id            uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    old_email          text NOT NULL,
    new_email          text NOT NULL,
    requested_at       timestamptz NOT NULL DEFAULT now(),
    confirm_job_id     uuid NOT NULL,
    token_hash         text,
    code_hash          text,
    confirm_expires_at timestamptz,
    code_attempts      integer NOT NULL DEFAULT 0,
    confirmed_at       timestamptz,
    notice_job_id      uuid NOT NULL,
    revert_hash        text,
    reverted_at        timestamptz,
    cancelled_at       timestamptz
);
CREATE UNIQUE INDEX email_changes_token_hash_key ON email_changes (token_hash);
CREATE UNIQUE INDEX email_changes_revert_hash_key ON email_changes (revert_hash);
CREATE INDEX email_changes_user_idx ON email_changes (user_id, requested_at DESC);
