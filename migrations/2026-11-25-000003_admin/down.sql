DROP TABLE audit_events;
DROP INDEX users_verified_created_at_idx;
DROP INDEX users_role_created_at_idx;
DROP INDEX users_last_name_trgm_idx;
DROP INDEX users_first_name_trgm_idx;
DROP INDEX users_email_trgm_idx;
-- pg_trgm stays: other objects may use it, and keeping it is harmless.
