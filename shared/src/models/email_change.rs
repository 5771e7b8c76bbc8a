//! Email changes: the new address confirms with a link or a 6-digit code,
//! the old address can revert for 7 days. Secrets are stored only as keyed
//! hashes.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::keys::SecretHasher;
use crate::schema::email_changes as ec;

/// Wrong codes allowed before the confirmation code is dead.
pub const MAX_CODE_ATTEMPTS: i32 = 5;
/// How long the old address may revert a change, from the request.
pub const REVERT_DAYS: i64 = 7;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = ec, check_for_backend(diesel::pg::Pg))]
pub struct EmailChange {
    pub id: Uuid,
    pub user_id: Uuid,
    pub old_email: String,
    pub new_email: String,
    pub requested_at: DateTime<Utc>,
    pub confirm_job_id: Uuid,
    pub token_hash: Option<String>,
    pub code_hash: Option<String>,
    pub confirm_expires_at: Option<DateTime<Utc>>,
    pub code_attempts: i32,
    pub confirmed_at: Option<DateTime<Utc>>,
    pub notice_job_id: Uuid,
    pub revert_hash: Option<String>,
    pub reverted_at: Option<DateTime<Utc>>,
    pub cancelled_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = ec)]
pub struct NewEmailChange {
    pub id: Uuid,
    pub user_id: Uuid,
    pub old_email: String,
    pub new_email: String,
    pub confirm_job_id: Uuid,
    pub notice_job_id: Uuid,
}

/// Keyed hash of the confirmation link token.
pub fn token_hash(hasher: &SecretHasher, token: &str) -> String {
    hasher.hash(format!("email-change:{token}").as_bytes())
}

/// Keyed hash of the 6-digit confirmation code, salted with the change id.
pub fn code_hash(hasher: &SecretHasher, change_id: Uuid, code: &str) -> String {
    hasher.hash(format!("email-code:{change_id}:{code}").as_bytes())
}

/// Keyed hash of the revert link token.
pub fn revert_hash(hasher: &SecretHasher, token: &str) -> String {
    hasher.hash(format!("email-revert:{token}").as_bytes())
}

impl NewEmailChange {
    pub async fn insert(&self, conn: &mut AsyncPgConnection) -> QueryResult<EmailChange> {
        diesel::insert_into(ec::table)
            .values(self)
            .returning(EmailChange::as_returning())
            .get_result(conn)
            .await
    }
}

impl EmailChange {
    pub fn is_pending(&self) -> bool {
        self.confirmed_at.is_none() && self.cancelled_at.is_none() && self.reverted_at.is_none()
    }

    /// The confirmation code can still be tried.
    pub fn code_usable(&self, now: DateTime<Utc>) -> bool {
        self.is_pending()
            && self.code_attempts < MAX_CODE_ATTEMPTS
            && self.confirm_expires_at.is_some_and(|t| t > now)
    }

    pub async fn find(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<Self>> {
        ec::table
            .find(id)
            .select(Self::as_select())
            .first(conn)
            .await
            .optional()
    }

    /// A new request supersedes the pending ones (their links and codes
    /// die; their revert links stay valid).
    pub async fn cancel_pending(conn: &mut AsyncPgConnection, user_id: Uuid) -> QueryResult<usize> {
        diesel::update(
            ec::table
                .filter(ec::user_id.eq(user_id))
                .filter(ec::confirmed_at.is_null())
                .filter(ec::cancelled_at.is_null())
                .filter(ec::reverted_at.is_null()),
        )
        .set(ec::cancelled_at.eq(Some(Utc::now())))
        .execute(conn)
        .await
    }

    /// Store the confirmation secrets of `job_id`'s email. False when the
    /// change is no longer pending or this job's email already went out.
    pub async fn set_confirm_secrets(
        conn: &mut AsyncPgConnection,
        id: Uuid,
        job_id: Uuid,
        token_hash: &str,
        code_hash: &str,
        expires_at: DateTime<Utc>,
    ) -> QueryResult<bool> {
        let n = diesel::update(
            ec::table
                .find(id)
                .filter(ec::confirm_job_id.eq(job_id))
                .filter(ec::confirmed_at.is_null())
                .filter(ec::cancelled_at.is_null())
                .filter(ec::reverted_at.is_null()),
        )
        .set((
            ec::token_hash.eq(Some(token_hash)),
            ec::code_hash.eq(Some(code_hash)),
            ec::confirm_expires_at.eq(Some(expires_at)),
            ec::code_attempts.eq(0),
        ))
        .execute(conn)
        .await?;
        Ok(n == 1)
    }

    /// Store the revert secret of the notice. False when already reverted.
    pub async fn set_revert_secret(
        conn: &mut AsyncPgConnection,
        id: Uuid,
        job_id: Uuid,
        hash: &str,
    ) -> QueryResult<bool> {
        let n = diesel::update(
            ec::table
                .find(id)
                .filter(ec::notice_job_id.eq(job_id))
                .filter(ec::reverted_at.is_null()),
        )
        .set(ec::revert_hash.eq(Some(hash)))
        .execute(conn)
        .await?;
        Ok(n == 1)
    }

    /// Lock the pending, unexpired change whose link token hashes to `hash`.
    pub async fn lock_by_token(
        conn: &mut AsyncPgConnection,
        hash: &str,
    ) -> QueryResult<Option<Self>> {
        ec::table
            .filter(ec::token_hash.eq(hash))
            .filter(ec::confirmed_at.is_null())
            .filter(ec::cancelled_at.is_null())
            .filter(ec::reverted_at.is_null())
            .filter(ec::confirm_expires_at.gt(diesel::dsl::now))
            .select(Self::as_select())
            .for_update()
            .first(conn)
            .await
            .optional()
    }

    /// Lock the user's newest pending change (the one a code confirms).
    pub async fn lock_pending_of_user(
        conn: &mut AsyncPgConnection,
        user_id: Uuid,
    ) -> QueryResult<Option<Self>> {
        ec::table
            .filter(ec::user_id.eq(user_id))
            .filter(ec::confirmed_at.is_null())
            .filter(ec::cancelled_at.is_null())
            .filter(ec::reverted_at.is_null())
            .order(ec::requested_at.desc())
            .select(Self::as_select())
            .for_update()
            .first(conn)
            .await
            .optional()
    }

    pub async fn record_failed_code(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<usize> {
        diesel::update(ec::table.find(id))
            .set(ec::code_attempts.eq(ec::code_attempts + 1))
            .execute(conn)
            .await
    }

    pub async fn mark_confirmed(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<usize> {
        diesel::update(ec::table.find(id))
            .set(ec::confirmed_at.eq(Some(Utc::now())))
            .execute(conn)
            .await
    }

    /// Lock the change whose revert token hashes to `hash`, if not yet
    /// reverted and within its [`REVERT_DAYS`] days.
    pub async fn lock_by_revert(
        conn: &mut AsyncPgConnection,
        hash: &str,
    ) -> QueryResult<Option<Self>> {
        ec::table
            .filter(ec::revert_hash.eq(hash))
            .filter(ec::reverted_at.is_null())
            .filter(ec::requested_at.gt(Utc::now() - chrono::Duration::days(REVERT_DAYS)))
            .select(Self::as_select())
            .for_update()
            .first(conn)
            .await
            .optional()
    }

    pub async fn mark_reverted(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<usize> {
        diesel::update(ec::table.find(id))
            .set(ec::reverted_at.eq(Some(Utc::now())))
            .execute(conn)
            .await
    }
}
