//! The `bots` table and its queries. Every query is scoped to an owner, so
//! a handler cannot forget the ownership check: another client's bot simply
//! does not exist for the caller (404, ids cannot be probed).

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::schema::bots;

/// Unique index on `(owner_id, lower(name))`.
pub const NAME_UNIQUE: &str = "bots_owner_name_key";

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = bots, check_for_backend(diesel::pg::Pg))]
pub struct Bot {
    pub id: Uuid,
    pub owner_id: Uuid,
    pub name: String,
    pub description: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = bots)]
pub struct NewBot {
    pub id: Uuid,
    pub owner_id: Uuid,
    pub name: String,
    pub description: Option<String>,
}

/// A partial update: `None` leaves a column alone; `Some(None)` clears the
/// description.
#[derive(Debug, Default, AsChangeset)]
#[diesel(table_name = bots)]
pub struct BotChanges {
    pub name: Option<String>,
    pub description: Option<Option<String>>,
    pub updated_at: Option<DateTime<Utc>>,
}

impl NewBot {
    pub async fn insert(&self, conn: &mut AsyncPgConnection) -> QueryResult<Bot> {
        diesel::insert_into(bots::table)
            .values(self)
            .returning(Bot::as_returning())
            .get_result(conn)
            .await
    }
}

impl Bot {
    /// The owner's bot, or `None` (absent or someone else's).
    pub async fn find_owned(
        conn: &mut AsyncPgConnection,
        owner: Uuid,
        id: Uuid,
    ) -> QueryResult<Option<Bot>> {
        bots::table
            .filter(bots::id.eq(id).and(bots::owner_id.eq(owner)))
            .select(Bot::as_select())
            .first(conn)
            .await
            .optional()
    }

    /// One page of the owner's bots, newest first, and their total.
    pub async fn list_owned(
        conn: &mut AsyncPgConnection,
        owner: Uuid,
        limit: i64,
        offset: i64,
    ) -> QueryResult<(Vec<Bot>, i64)> {
        let items = bots::table
            .filter(bots::owner_id.eq(owner))
            .order((bots::created_at.desc(), bots::id.desc()))
            .limit(limit)
            .offset(offset)
            .select(Bot::as_select())
            .load(conn)
            .await?;
        let total = Self::count_owned(conn, owner).await?;
        Ok((items, total))
    }

    pub async fn count_owned(conn: &mut AsyncPgConnection, owner: Uuid) -> QueryResult<i64> {
        bots::table
            .filter(bots::owner_id.eq(owner))
            .count()
            .get_result(conn)
            .await
    }

    /// Apply `changes` to the owner's bot; `None` when it is not theirs.
    pub async fn update_owned(
        conn: &mut AsyncPgConnection,
        owner: Uuid,
        id: Uuid,
        mut changes: BotChanges,
    ) -> QueryResult<Option<Bot>> {
        changes.updated_at = Some(Utc::now());
        diesel::update(bots::table.filter(bots::id.eq(id).and(bots::owner_id.eq(owner))))
            .set(changes)
            .returning(Bot::as_returning())
            .get_result(conn)
            .await
            .optional()
    }

    /// Delete the owner's bot; `false` when it is not theirs.
    pub async fn delete_owned(
        conn: &mut AsyncPgConnection,
        owner: Uuid,
        id: Uuid,
    ) -> QueryResult<bool> {
        let n = diesel::delete(bots::table.filter(bots::id.eq(id).and(bots::owner_id.eq(owner))))
            .execute(conn)
            .await?;
        Ok(n > 0)
    }
}
