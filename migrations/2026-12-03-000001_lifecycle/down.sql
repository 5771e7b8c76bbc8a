DROP TABLE email_changes;
DROP TABLE password_resets;
DROP INDEX users_active_created_at_idx;
ALTER TABLE users DROP COLUMN reminded_at;
ALTER TABLE users DROP COLUMN is_active;
