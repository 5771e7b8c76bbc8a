-- Administration: user search and filters, and the audit log.

-- `GET /users?q=` is a case-insensitive substring search (ILIKE '%q%') on
-- email, first_name and last_name. Trigram GIN indexes serve it (pg_trgm
-- folds case, so one index on the plain column serves ILIKE); the three
-- conditions are OR-ed, which PostgreSQL answers with a BitmapOr.
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE INDEX users_email_trgm_idx ON users USING gin (email gin_trgm_ops);
CREATE INDEX users_first_name_trgm_idx ON users USING gin (first_name gin_trgm_ops);
CREATE INDEX users_last_name_trgm_idx ON users USING gin (last_name gin_trgm_ops);
-- Filters by role or verification state, newest first: equality prefix,
-- then the sort order of the list, so a page is a short index range.
CREATE INDEX users_role_created_at_idx ON users (role, created_at DESC, id DESC);
CREATE INDEX users_verified_created_at_idx ON users (is_verified, created_at DESC, id DESC);

-- Who did what to whom, when, from where. No foreign keys: the trail must
-- outlive the users it mentions.
CREATE TABLE audit_events (
    id          uuid PRIMARY KEY,
    occurred_at timestamptz NOT NULL DEFAULT now(),
    actor_id    uuid,
    subject_id  uuid,
    action      text NOT NULL,
    ip          text,
    details     jsonb NOT NULL DEFAULT '{}'::jsonb
);
-- Newest-first listing, optionally by action.
CREATE INDEX audit_events_occurred_at_idx ON audit_events (occurred_at DESC, id DESC);
CREATE INDEX audit_events_action_idx ON audit_events (action, occurred_at DESC, id DESC);
-- Filter by user: `actor_id = $1 OR subject_id = $1` is a BitmapOr of these.
CREATE INDEX audit_events_actor_idx ON audit_events (actor_id, occurred_at DESC, id DESC)
    WHERE actor_id IS NOT NULL;
CREATE INDEX audit_events_subject_idx ON audit_events (subject_id, occurred_at DESC, id DESC)
    WHERE subject_id IS NOT NULL;
