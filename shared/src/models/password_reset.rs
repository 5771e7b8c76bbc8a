//! Password resets: one current reset per user, its token stored only as
//! a keyed hash.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::keys::SecretHasher;
use crate::schema::password_resets as pr;

/// The current reset of a user. `token_hash` is null until the worker of
/// `job_id` has made the token.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = pr, check_for_backend(diesel::pg::Pg))]
pub struct PasswordReset {
    pub user_id: Uuid,
    pub job_id: Uuid,
    pub token_hash: Option<String>,
    pub expires_at: Option<DateTime<Utc>>,
    pub requested_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
    pub used_at: Option<DateTime<Utc>>,
}

/// Keyed hash of a reset token (its own prefix: a verification link token
/// can never pass for a reset token).
pub fn token_hash(hasher: &SecretHasher, token: &str) -> String {
    hasher.hash(format!("reset:{token}").as_bytes())
}

impl PasswordReset {
    /// Start a reset for `job_id`: replaces the user's previous reset, so
    /// an older token dies at once, whether or not its email went out.
    pub async fn request(
        conn: &mut AsyncPgConnection,
        user_id: Uuid,
        job_id: Uuid,
    ) -> QueryResult<usize> {
        diesel::insert_into(pr::table)
            .values((
                pr::user_id.eq(user_id),
                pr::job_id.eq(job_id),
                pr::requested_at.eq(Utc::now()),
            ))
            .on_conflict(pr::user_id)
            .do_update()
            .set((
                pr::job_id.eq(job_id),
                pr::token_hash.eq(None::<String>),
                pr::expires_at.eq(None::<DateTime<Utc>>),
                pr::requested_at.eq(Utc::now()),
                pr::sent_at.eq(None::<DateTime<Utc>>),
                pr::used_at.eq(None::<DateTime<Utc>>),
            ))
            .execute(conn)
            .await
    }

    /// The same lookup `request` makes, for an unknown email: `forgot`
    /// does comparable database work whether or not the account exists.
    pub async fn dummy_request(conn: &mut AsyncPgConnection) -> QueryResult<usize> {
        pr::table
            .find(Uuid::now_v7())
            .select(pr::user_id)
            .for_update()
            .load::<Uuid>(conn)
            .await
            .map(|rows| rows.len())
    }

    pub async fn find(conn: &mut AsyncPgConnection, user_id: Uuid) -> QueryResult<Option<Self>> {
        pr::table
            .find(user_id)
            .select(Self::as_select())
            .first(conn)
            .await
            .optional()
    }

    /// Store the token of `job_id`'s email. False when a newer request
    /// replaced the row, or the email of this job already went out.
    pub async fn set_token(
        conn: &mut AsyncPgConnection,
        user_id: Uuid,
        job_id: Uuid,
        hash: &str,
        expires_at: DateTime<Utc>,
    ) -> QueryResult<bool> {
        let n = diesel::update(
            pr::table
                .find(user_id)
                .filter(pr::job_id.eq(job_id))
                .filter(pr::sent_at.is_null())
                .filter(pr::used_at.is_null()),
        )
        .set((
            pr::token_hash.eq(Some(hash)),
            pr::expires_at.eq(Some(expires_at)),
        ))
        .execute(conn)
        .await?;
        Ok(n == 1)
    }

    pub async fn mark_sent(
        conn: &mut AsyncPgConnection,
        user_id: Uuid,
        job_id: Uuid,
    ) -> QueryResult<usize> {
        diesel::update(pr::table.find(user_id).filter(pr::job_id.eq(job_id)))
            .set(pr::sent_at.eq(Some(Utc::now())))
            .execute(conn)
            .await
    }

    /// The user of a current, unused, unexpired token (without spending it:
    /// `reset` checks the new password first, so a weak one keeps the link).
    pub async fn find_valid(conn: &mut AsyncPgConnection, hash: &str) -> QueryResult<Option<Uuid>> {
        pr::table
            .filter(pr::token_hash.eq(hash))
            .filter(pr::used_at.is_null())
            .filter(pr::expires_at.gt(diesel::dsl::now))
            .select(pr::user_id)
            .first(conn)
            .await
            .optional()
    }

    /// Spend a token: the user it belongs to, if it is current, unused and
    /// unexpired. One statement, so two concurrent resets cannot both win.
    pub async fn consume(conn: &mut AsyncPgConnection, hash: &str) -> QueryResult<Option<Uuid>> {
        diesel::update(
            pr::table
                .filter(pr::token_hash.eq(hash))
                .filter(pr::used_at.is_null())
                .filter(pr::expires_at.gt(diesel::dsl::now)),
        )
        .set(pr::used_at.eq(Some(Utc::now())))
        .returning(pr::user_id)
        .get_result(conn)
        .await
        .optional()
    }
}
