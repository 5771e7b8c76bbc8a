-- A client's bots. `owner_id` is the Gatehouse user id (`sub`): BotFactory
-- keeps no copy of the user, Gatehouse owns identity.
CREATE TABLE bots (
    id uuid PRIMARY KEY,
    owner_id uuid NOT NULL,
    name text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 64),
    description text CHECK (char_length(description) <= 1000),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Names are unique per owner, ignoring case ("MyBot" and "mybot" clash).
CREATE UNIQUE INDEX bots_owner_name_key ON bots (owner_id, lower(name));
-- "My bots", newest first.
CREATE INDEX bots_owner_created_idx ON bots (owner_id, created_at DESC, id DESC);
