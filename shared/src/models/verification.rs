use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::keys::SecretHasher;
use crate::schema::email_verifications as ev;

/// Wrong codes allowed before the code is dead.
pub const MAX_CODE_ATTEMPTS: i32 = 5;

/// The current code and link of a user. Only hashes are stored.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = ev, check_for_backend(diesel::pg::Pg))]
pub struct EmailVerification {
    pub user_id: Uuid,
    pub code_hash: String,
    pub code_expires_at: DateTime<Utc>,
    pub link_hash: String,
    pub link_expires_at: DateTime<Utc>,
    pub attempts: i32,
    pub job_id: Uuid,
    pub requested_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

/// Keyed hash of a 6-digit code, salted with the user id so equal codes of
/// different users differ.
pub fn code_hash(hasher: &SecretHasher, user_id: Uuid, code: &str) -> String {
    hasher.hash(format!("code:{user_id}:{code}").as_bytes())
}

/// Keyed hash of a link token.
pub fn link_hash(hasher: &SecretHasher, token: &str) -> String {
    hasher.hash(format!("link:{token}").as_bytes())
}

impl EmailVerification {
    pub fn code_usable(&self, now: DateTime<Utc>) -> bool {
        self.code_expires_at > now && self.attempts < MAX_CODE_ATTEMPTS
    }

    /// Store a fresh code, replacing the old one, unless a newer request
    /// already wrote one (a redelivered old job must not win).
    /// Returns false when a newer request holds the row.
    pub async fn replace(&self, conn: &mut AsyncPgConnection) -> QueryResult<bool> {
        use diesel::sql_types::{Int4, Nullable, Text, Timestamptz, Uuid as SqlUuid};
        let n = diesel::sql_query(
            "INSERT INTO email_verifications
                (user_id, code_hash, code_expires_at, link_hash, link_expires_at, attempts, job_id, requested_at, sent_at, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
             ON CONFLICT (user_id) DO UPDATE SET
                code_hash = EXCLUDED.code_hash, code_expires_at = EXCLUDED.code_expires_at,
                link_hash = EXCLUDED.link_hash, link_expires_at = EXCLUDED.link_expires_at,
                attempts = 0, job_id = EXCLUDED.job_id, requested_at = EXCLUDED.requested_at,
                sent_at = NULL, created_at = EXCLUDED.created_at
             WHERE email_verifications.requested_at <= EXCLUDED.requested_at",
        )
        .bind::<SqlUuid, _>(self.user_id)
        .bind::<Text, _>(&self.code_hash)
        .bind::<Timestamptz, _>(self.code_expires_at)
        .bind::<Text, _>(&self.link_hash)
        .bind::<Timestamptz, _>(self.link_expires_at)
        .bind::<Int4, _>(self.attempts)
        .bind::<SqlUuid, _>(self.job_id)
        .bind::<Timestamptz, _>(self.requested_at)
        .bind::<Nullable<Timestamptz>, _>(self.sent_at)
        .bind::<Timestamptz, _>(self.created_at)
        .execute(conn)
        .await?;
        Ok(n > 0)
    }

    pub async fn find(conn: &mut AsyncPgConnection, user_id: Uuid) -> QueryResult<Option<Self>> {
        ev::table
            .find(user_id)
            .select(Self::as_select())
            .first(conn)
            .await
            .optional()
    }

    /// Lock the user's row, then their code row, for the rest of the
    /// transaction. Always `users` first: the purge's `DELETE FROM users`
    /// locks the user and then, through `ON DELETE CASCADE`, this row; the
    /// opposite order deadlocked against it (issue 11 item 7). None when
    /// the user or the row is gone (a purge that won the race).
    pub async fn lock(conn: &mut AsyncPgConnection, user_id: Uuid) -> QueryResult<Option<Self>> {
        if crate::models::User::lock(conn, user_id).await?.is_none() {
            return Ok(None);
        }
        ev::table
            .find(user_id)
            .select(Self::as_select())
            .for_update()
            .first(conn)
            .await
            .optional()
    }

    pub async fn find_by_link(
        conn: &mut AsyncPgConnection,
        hash: &str,
    ) -> QueryResult<Option<Self>> {
        ev::table
            .filter(ev::link_hash.eq(hash))
            .filter(ev::link_expires_at.gt(diesel::dsl::now))
            .select(Self::as_select())
            .first(conn)
            .await
            .optional()
    }

    pub async fn mark_sent(
        conn: &mut AsyncPgConnection,
        user_id: Uuid,
        job_id: Uuid,
    ) -> QueryResult<usize> {
        diesel::update(ev::table.find(user_id).filter(ev::job_id.eq(job_id)))
            .set(ev::sent_at.eq(Some(Utc::now())))
            .execute(conn)
            .await
    }

    pub async fn record_failed_attempt(
        conn: &mut AsyncPgConnection,
        user_id: Uuid,
    ) -> QueryResult<usize> {
        diesel::update(ev::table.find(user_id))
            .set(ev::attempts.eq(ev::attempts + 1))
            .execute(conn)
            .await
    }

    /// Spend the code so it cannot be used again (the link stays valid
    /// until it expires so a second click still reports success).
    pub async fn spend_code(conn: &mut AsyncPgConnection, user_id: Uuid) -> QueryResult<usize> {
        diesel::update(ev::table.find(user_id))
            .set(ev::attempts.eq(MAX_CODE_ATTEMPTS))
            .execute(conn)
            .await
    }

    pub async fn count_expired(conn: &mut AsyncPgConnection) -> QueryResult<i64> {
        ev::table
            .filter(ev::link_expires_at.lt(diesel::dsl::now))
            .count()
            .get_result(conn)
            .await
    }

    /// Delete rows whose link expired (the code expires earlier).
    pub async fn delete_expired(conn: &mut AsyncPgConnection) -> QueryResult<usize> {
        diesel::delete(ev::table.filter(ev::link_expires_at.lt(diesel::dsl::now)))
            .execute(conn)
            .await
    }
}
