//! The `messages` table, its queries and its wire form.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::schema::messages;

pub const BODY_MAX: usize = 2000;
pub const ROOM_MAX: usize = 64;

/// A room name: 1 to 64 of `a-z 0-9 _ -`.
pub fn valid_room(room: &str) -> bool {
    (1..=ROOM_MAX).contains(&room.len())
        && room
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = messages, check_for_backend(diesel::pg::Pg))]
pub struct Message {
    pub id: i64,
    pub room: String,
    pub author_id: Uuid,
    pub author_name: String,
    pub body: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = messages)]
pub struct NewMessage<'a> {
    pub room: &'a str,
    pub author_id: Uuid,
    pub author_name: &'a str,
    pub body: &'a str,
}

impl NewMessage<'_> {
    /// Insert (one statement, committed on return) and read back the row.
    pub async fn insert(&self, conn: &mut AsyncPgConnection) -> QueryResult<Message> {
        diesel::insert_into(messages::table)
            .values(self)
            .returning(Message::as_returning())
            .get_result(conn)
            .await
    }
}

impl Message {
    /// A room's history, newest first: `limit` messages older than `before`
    /// (an id), or the newest ones.
    pub async fn history(
        conn: &mut AsyncPgConnection,
        room: &str,
        before: Option<i64>,
        limit: i64,
    ) -> QueryResult<Vec<Message>> {
        let mut query = messages::table
            .filter(messages::room.eq(room))
            .order(messages::id.desc())
            .limit(limit)
            .select(Message::as_select())
            .into_boxed();
        if let Some(before) = before {
            query = query.filter(messages::id.lt(before));
        }
        query.load(conn).await
    }

    /// Messages of `rooms` created since `since`, oldest first: what a
    /// replica may have missed while its Redis subscription was down.
    pub async fn since(
        conn: &mut AsyncPgConnection,
        rooms: &[String],
        since: DateTime<Utc>,
        limit: i64,
    ) -> QueryResult<Vec<Message>> {
        messages::table
            .filter(messages::room.eq_any(rooms))
            .filter(messages::created_at.ge(since))
            .order(messages::id.asc())
            .limit(limit)
            .select(Message::as_select())
            .load(conn)
            .await
    }
}

/// A message as clients see it: a history item, and (with `"type":
/// "message"`) the socket frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageOut {
    pub id: i64,
    pub room: String,
    pub author_id: Uuid,
    pub author_name: String,
    pub body: String,
    /// RFC 3339, UTC, microseconds (`2026-12-01T10:00:00.123456Z`).
    pub created_at: String,
}

impl From<Message> for MessageOut {
    fn from(m: Message) -> Self {
        Self {
            id: m.id,
            room: m.room,
            author_id: m.author_id,
            author_name: m.author_name,
            body: m.body,
            created_at: example_kit::time::format(&m.created_at),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_names() {
        assert!(valid_room("lobby"));
        assert!(valid_room("a-b_c-9"));
        assert!(valid_room(&"a".repeat(64)));
        assert!(!valid_room(&"a".repeat(65)));
        assert!(!valid_room(""));
        assert!(!valid_room("Lobby"));
        assert!(!valid_room("a b"));
        assert!(!valid_room("é"));
    }
}
