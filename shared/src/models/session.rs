use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::BigInt;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::models::User;
use crate::schema::{sessions, users};

/// A login session: one refresh-token family.
#[derive(Debug, Clone, Queryable, Selectable, Identifiable)]
#[diesel(table_name = sessions, check_for_backend(diesel::pg::Pg))]
pub struct Session {
    pub id: Uuid,
    pub user_id: Uuid,
    pub refresh_jti: Uuid,
    pub previous_jti: Option<Uuid>,
    pub rotated_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub last_used_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub revoked_reason: Option<String>,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
    /// Access tokens of this session with `iat` before this (epoch
    /// seconds) are stale; see `models::revocation`.
    pub not_before: i64,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = sessions)]
pub struct NewSession {
    pub id: Uuid,
    pub user_id: Uuid,
    pub refresh_jti: Uuid,
    pub expires_at: DateTime<Utc>,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
}

impl NewSession {
    pub async fn insert(&self, conn: &mut AsyncPgConnection) -> QueryResult<Session> {
        diesel::insert_into(sessions::table)
            .values(self)
            .returning(Session::as_returning())
            .get_result(conn)
            .await
    }
}

impl Session {
    pub fn is_active(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none() && self.expires_at > now
    }

    /// The users behind live sessions, in one query: each live session's id
    /// and `not_before` with its user. This runs for every authenticated request (coalesced
    /// by the API): the token proves identity, the database decides
    /// authority. Callers check that the user is the one their token names.
    ///
    /// One id gets `id = $1`, whose generic plan PostgreSQL caches (two
    /// primary-key lookups). `id = ANY($1)` is planned for ten ids: on
    /// small tables that is a hash join over a scan of `users`, so
    /// PostgreSQL re-plans it on every execution; that cost only pays off
    /// for a real batch.
    pub async fn active_users(
        conn: &mut AsyncPgConnection,
        session_ids: &[Uuid],
    ) -> QueryResult<Vec<(Uuid, i64, User)>> {
        let live = sessions::table
            .inner_join(users::table)
            .filter(sessions::revoked_at.is_null())
            .filter(sessions::expires_at.gt(diesel::dsl::now))
            .select((sessions::id, sessions::not_before, User::as_select()));
        match session_ids {
            [id] => live.filter(sessions::id.eq(*id)).load(conn).await,
            ids => live.filter(sessions::id.eq_any(ids)).load(conn).await,
        }
    }

    /// A user's live sessions (not revoked, not expired), newest first.
    pub async fn live_of_user(
        conn: &mut AsyncPgConnection,
        user_id: Uuid,
    ) -> QueryResult<Vec<Session>> {
        sessions::table
            .filter(sessions::user_id.eq(user_id))
            .filter(sessions::revoked_at.is_null())
            .filter(sessions::expires_at.gt(diesel::dsl::now))
            .order((sessions::created_at.desc(), sessions::id.desc()))
            .select(Session::as_select())
            .load(conn)
            .await
    }

    /// One live session, only if it belongs to `user_id` (another user's
    /// id finds nothing, like an unknown one).
    pub async fn find_live_of_user(
        conn: &mut AsyncPgConnection,
        id: Uuid,
        user_id: Uuid,
    ) -> QueryResult<Option<Session>> {
        sessions::table
            .find(id)
            .filter(sessions::user_id.eq(user_id))
            .filter(sessions::revoked_at.is_null())
            .filter(sessions::expires_at.gt(diesel::dsl::now))
            .select(Session::as_select())
            .first(conn)
            .await
            .optional()
    }

    pub async fn lock(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<Session>> {
        sessions::table
            .find(id)
            .select(Session::as_select())
            .for_update()
            .first(conn)
            .await
            .optional()
    }

    /// Rotate: the presented `jti` becomes the parent, `new_jti` the current.
    pub async fn rotate(
        conn: &mut AsyncPgConnection,
        id: Uuid,
        presented: Uuid,
        new_jti: Uuid,
    ) -> QueryResult<usize> {
        let now = Utc::now();
        diesel::update(sessions::table.find(id))
            .set((
                sessions::previous_jti.eq(Some(presented)),
                sessions::refresh_jti.eq(new_jti),
                sessions::rotated_at.eq(Some(now)),
                sessions::last_used_at.eq(now),
            ))
            .execute(conn)
            .await
    }

    pub async fn touch(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<usize> {
        diesel::update(sessions::table.find(id))
            .set(sessions::last_used_at.eq(Utc::now()))
            .execute(conn)
            .await
    }

    // Revoking or staling sessions: `Session::end`, `end_all_for_user`,
    // `stale_all_for_user` and `stale` in `models::revocation`, which also
    // write the revocation feed.

    pub async fn count_active_for_user(
        conn: &mut AsyncPgConnection,
        user_id: Uuid,
    ) -> QueryResult<i64> {
        sessions::table
            .filter(sessions::user_id.eq(user_id))
            .filter(sessions::revoked_at.is_null())
            .filter(sessions::expires_at.gt(diesel::dsl::now))
            .count()
            .get_result(conn)
            .await
    }

    /// Sessions the purge would delete (dry run).
    pub async fn count_dead(
        conn: &mut AsyncPgConnection,
        revoked_before: DateTime<Utc>,
    ) -> QueryResult<i64> {
        sessions::table
            .filter(
                sessions::expires_at
                    .lt(diesel::dsl::now)
                    .or(sessions::revoked_at.lt(revoked_before)),
            )
            .count()
            .get_result(conn)
            .await
    }

    /// Delete one batch of sessions that expired or were revoked more than
    /// `keep` ago (revoked rows are kept a while for reuse detection).
    pub async fn delete_dead_batch(
        conn: &mut AsyncPgConnection,
        revoked_before: DateTime<Utc>,
        batch: i64,
    ) -> QueryResult<usize> {
        diesel::sql_query(
            "DELETE FROM sessions WHERE id IN (
                SELECT id FROM sessions
                WHERE expires_at < now() OR revoked_at < $1
                LIMIT $2
                FOR UPDATE SKIP LOCKED)",
        )
        .bind::<diesel::sql_types::Timestamptz, _>(revoked_before)
        .bind::<BigInt, _>(batch)
        .execute(conn)
        .await
    }
}
