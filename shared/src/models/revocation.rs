//! Stale tokens, one mechanism: every session has a `not_before` (epoch
//! seconds). A change that makes a session's access tokens stale moves it
//! to the next whole second after the change and, if the session ends,
//! revokes it. Tokens are minted with `iat = max(now, not_before)`, and any
//! access token with `iat < not_before` is dead, at Gatehouse and in every
//! app (through the revocation feed).
//!
//! The functions here are the only way to revoke or stale sessions. Each
//! appends its feed entries in the same transaction as the change (and
//! opens one if the caller has none), so no caller can forget the feed.
//! Which one to call:
//!
//! | change | call |
//! |---|---|
//! | logout, revoke one session, refresh-token reuse | [`Session::end`] |
//! | logout everywhere, password change (other sessions), password reset, disabling, email revert | [`Session::end_all_for_user`] |
//! | role change | [`Session::stale_all_for_user`] |
//! | email change confirmed | [`Session::end_all_for_user`] (keep the caller's) + [`Session::stale`] |
//! | deletion of a user or a live session | nothing: a trigger on `sessions` writes the entry |
//!
//! Why tokens minted "just before" a change are refused even within the
//! same second: the changer locks the user row (user-wide changes) or the
//! session row before it computes `not_before` from the database clock;
//! minting reads the user row under a share lock ([`User::lock_for_minting`])
//! and the session under an update lock, and takes `now` from the same
//! clock inside that transaction. So a mint either sees the change (and
//! signs `iat >= not_before`), or commits before the changer computes
//! `not_before`, whose whole second is then later than the mint's `iat`.

use chrono::{DateTime, Utc};
use diesel::dsl::sql;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Timestamptz};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde::Serialize;
use uuid::Uuid;

use crate::models::{Session, User};
use crate::schema::{revocations, sessions, users};

/// Key of the transaction-level advisory lock that serialises feed inserts
/// until commit, so cursor order is commit order. The session-deletion
/// trigger (migration `2026-12-01-000001_tokens`) takes the same key.
pub const FEED_LOCK_KEY: i64 = 0x6761_7465_7265_766b; // "gaterevk"

/// `not_before` of a change happening now: the next whole second of the
/// database clock, and past the previous `not_before`: a token minted
/// after an earlier change of the same second carries `iat` = that
/// `not_before`, and must die too. (A burst of changes within one second
/// pushes `not_before`, and so fresh tokens' `iat`, a few seconds ahead;
/// the verifiers' leeway covers that.)
const NEXT_SECOND: &str =
    "GREATEST(not_before + 1, floor(extract(epoch FROM clock_timestamp()))::bigint + 1)";

/// One entry of the revocation feed: access tokens of session `sid` with
/// `iat < not_before` are dead.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Serialize)]
#[diesel(table_name = revocations, check_for_backend(diesel::pg::Pg))]
pub struct Revocation {
    pub cursor: i64,
    pub sid: Uuid,
    pub not_before: i64,
}

#[derive(Insertable)]
#[diesel(table_name = revocations)]
struct NewRevocation {
    sid: Uuid,
    not_before: i64,
}

impl Revocation {
    /// Append entries. Must run inside a transaction that commits right
    /// after (the lock is held until then): the callers below make sure.
    async fn append(
        conn: &mut AsyncPgConnection,
        changed: Vec<(Uuid, i64)>,
    ) -> QueryResult<Vec<Revocation>> {
        if changed.is_empty() {
            return Ok(Vec::new());
        }
        diesel::sql_query("SELECT pg_advisory_xact_lock($1)")
            .bind::<BigInt, _>(FEED_LOCK_KEY)
            .execute(conn)
            .await?;
        let rows: Vec<NewRevocation> = changed
            .into_iter()
            .map(|(sid, not_before)| NewRevocation { sid, not_before })
            .collect();
        diesel::insert_into(revocations::table)
            .values(&rows)
            .returning(Revocation::as_returning())
            .get_results(conn)
            .await
    }

    /// Entries after `since` (all kept entries without it), oldest first.
    pub async fn page(
        conn: &mut AsyncPgConnection,
        since: Option<i64>,
        limit: i64,
    ) -> QueryResult<Vec<Revocation>> {
        revocations::table
            .filter(revocations::cursor.gt(since.unwrap_or(0)))
            .order(revocations::cursor.asc())
            .limit(limit)
            .select(Revocation::as_select())
            .load(conn)
            .await
    }

    /// The newest cursor kept, or 0.
    pub async fn last_cursor(conn: &mut AsyncPgConnection) -> QueryResult<i64> {
        revocations::table
            .select(diesel::dsl::max(revocations::cursor))
            .first::<Option<i64>>(conn)
            .await
            .map(Option::unwrap_or_default)
    }

    /// The purge: forget entries written before `cutoff` (every token they
    /// could refuse has expired).
    pub async fn delete_before(
        conn: &mut AsyncPgConnection,
        cutoff: DateTime<Utc>,
    ) -> QueryResult<usize> {
        diesel::delete(revocations::table.filter(revocations::created_at.lt(cutoff)))
            .execute(conn)
            .await
    }
}

/// `iat` (and `nbf`) of a token minted at `now` for a session: never
/// before the session's `not_before`, so a refresh right after a change is
/// accepted at once even within the same second.
pub fn token_iat(now: DateTime<Utc>, not_before: i64) -> i64 {
    now.timestamp().max(not_before)
}

impl User {
    /// Read a user to mint a token: share-locks the row until the caller's
    /// transaction ends (a concurrent change of the user waits for it, or
    /// it waits for the change and reads the result) and returns the
    /// database clock. Call it first in the minting transaction.
    pub async fn lock_for_minting(
        conn: &mut AsyncPgConnection,
        id: Uuid,
    ) -> QueryResult<Option<(User, DateTime<Utc>)>> {
        users::table
            .find(id)
            .select((User::as_select(), sql::<Timestamptz>("clock_timestamp()")))
            .for_share()
            .first(conn)
            .await
            .optional()
    }
}

impl Session {
    /// End one session: revoke it and make its tokens stale. Logout,
    /// revoking one session, refresh-token reuse. No-op (no entry) when it
    /// was already revoked.
    pub async fn end(
        conn: &mut AsyncPgConnection,
        id: Uuid,
        reason: &str,
    ) -> QueryResult<Vec<Revocation>> {
        conn.transaction(async |conn| {
            let ids = sessions::table
                .find(id)
                .filter(sessions::revoked_at.is_null())
                .select(sessions::id)
                .for_no_key_update()
                .load::<Uuid>(conn)
                .await?;
            Self::expire(conn, &ids, Some(reason)).await
        })
        .await
    }

    /// Keep one session but make its current access tokens stale (the
    /// caller's own session after an email change).
    pub async fn stale(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Vec<Revocation>> {
        conn.transaction(async |conn| {
            let ids = sessions::table
                .find(id)
                .filter(sessions::revoked_at.is_null())
                .select(sessions::id)
                .for_no_key_update()
                .load::<Uuid>(conn)
                .await?;
            Self::expire(conn, &ids, None).await
        })
        .await
    }

    /// End every session of a user except `keep`: logout everywhere, a
    /// password change (keeping the caller's), a password reset, disabling,
    /// an email revert. Locks the user row first.
    pub async fn end_all_for_user(
        conn: &mut AsyncPgConnection,
        user_id: Uuid,
        keep: Option<Uuid>,
        reason: &str,
    ) -> QueryResult<Vec<Revocation>> {
        conn.transaction(async |conn| {
            let ids = Self::lock_live_of_user(conn, user_id, keep).await?;
            Self::expire(conn, &ids, Some(reason)).await
        })
        .await
    }

    /// Keep every session of a user but make their access tokens stale: a
    /// role change. The next refresh returns tokens with the new state.
    pub async fn stale_all_for_user(
        conn: &mut AsyncPgConnection,
        user_id: Uuid,
    ) -> QueryResult<Vec<Revocation>> {
        conn.transaction(async |conn| {
            let ids = Self::lock_live_of_user(conn, user_id, None).await?;
            Self::expire(conn, &ids, None).await
        })
        .await
    }

    /// Lock the user row (so minting waits, see the module docs), then the
    /// user's unrevoked sessions, in id order so concurrent callers queue.
    async fn lock_live_of_user(
        conn: &mut AsyncPgConnection,
        user_id: Uuid,
        keep: Option<Uuid>,
    ) -> QueryResult<Vec<Uuid>> {
        users::table
            .find(user_id)
            .select(users::id)
            .for_no_key_update()
            .load::<Uuid>(conn)
            .await?;
        sessions::table
            .filter(sessions::user_id.eq(user_id))
            .filter(sessions::revoked_at.is_null())
            .filter(sessions::id.ne(keep.unwrap_or(Uuid::nil())))
            .order(sessions::id.asc())
            .select(sessions::id)
            .for_no_key_update()
            .load(conn)
            .await
    }

    /// Move `not_before` of the locked sessions `ids` to the next whole
    /// second (computed now, after the locks), revoke them when `revoke`
    /// names a reason, and append their feed entries.
    async fn expire(
        conn: &mut AsyncPgConnection,
        ids: &[Uuid],
        revoke: Option<&str>,
    ) -> QueryResult<Vec<Revocation>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let target = sessions::table.filter(sessions::id.eq_any(ids));
        let not_before = sessions::not_before.eq(sql::<BigInt>(NEXT_SECOND));
        let returning = (sessions::id, sessions::not_before);
        let changed: Vec<(Uuid, i64)> = match revoke {
            Some(reason) => {
                diesel::update(target)
                    .set((
                        not_before,
                        sessions::revoked_at.eq(Some(Utc::now())),
                        sessions::revoked_reason.eq(Some(reason)),
                    ))
                    .returning(returning)
                    .get_results(conn)
                    .await?
            }
            None => {
                diesel::update(target)
                    .set(not_before)
                    .returning(returning)
                    .get_results(conn)
                    .await?
            }
        };
        Revocation::append(conn, changed).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iat_never_precedes_not_before() {
        let now = DateTime::<Utc>::from_timestamp(1_000, 999_000_000).expect("ts");
        assert_eq!(token_iat(now, 0), 1_000);
        assert_eq!(token_iat(now, 1_001), 1_001);
        assert_eq!(token_iat(now, 999), 1_000);
    }
}
