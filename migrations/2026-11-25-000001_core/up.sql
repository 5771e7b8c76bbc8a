-- Accounts, sessions (refresh-token families).
CREATE TABLE users (
    id            uuid PRIMARY KEY,
    email         text NOT NULL,
    password_hash text NOT NULL,
    first_name    text,
    last_name     text,
    role          text NOT NULL DEFAULT 'user' CHECK (role IN ('user', 'admin')),
    is_verified   boolean NOT NULL DEFAULT false,
    verified_at   timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
-- Email is unique regardless of case.
CREATE UNIQUE INDEX users_email_lower_key ON users (lower(email));
-- Newest-first listing.
CREATE INDEX users_created_at_idx ON users (created_at DESC, id DESC);
-- The purge scans only unverified rows.
CREATE INDEX users_unverified_created_at_idx ON users (created_at) WHERE NOT is_verified;
CREATE INDEX users_admins_idx ON users (id) WHERE role = 'admin';

-- One row per login: the refresh-token family. The server tracks the current
-- refresh `jti` and its parent (for a short grace window on concurrent refresh).
CREATE TABLE sessions (
    id             uuid PRIMARY KEY,
    user_id        uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    refresh_jti    uuid NOT NULL,
    previous_jti   uuid,
    rotated_at     timestamptz,
    created_at     timestamptz NOT NULL DEFAULT now(),
    last_used_at   timestamptz NOT NULL DEFAULT now(),
    expires_at     timestamptz NOT NULL,
    revoked_at     timestamptz,
    revoked_reason text,
    user_agent     text,
    ip             text
);
CREATE INDEX sessions_user_id_idx ON sessions (user_id);
CREATE INDEX sessions_expires_at_idx ON sessions (expires_at);
