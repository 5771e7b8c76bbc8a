-- Chat messages. `author_id` is the Gatehouse user id (`sub`); the chat
-- keeps no user table. `id` orders a room's history (newest = highest).
CREATE TABLE messages (
    id bigserial PRIMARY KEY,
    room text NOT NULL CHECK (room ~ '^[a-z0-9_-]{1,64}$'),
    author_id uuid NOT NULL,
    author_name text NOT NULL,
    body text NOT NULL CHECK (char_length(body) BETWEEN 1 AND 2000),
    created_at timestamptz NOT NULL DEFAULT now()
);

-- History pages (`WHERE room = $1 AND id < $2 ORDER BY id DESC`) and the
-- catch-up after a Redis reconnect.
CREATE INDEX messages_room_id_idx ON messages (room, id DESC);
