use chrono::{DateTime, Utc};
use diesel::dsl::count_star;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::{Page, PageRequest, paginate};
use crate::domain::{Email, Role};
use crate::schema::users;

diesel::define_sql_function!(fn lower(x: diesel::sql_types::Text) -> diesel::sql_types::Text);

#[derive(Debug, Clone, Queryable, Selectable, Identifiable)]
#[diesel(table_name = users, check_for_backend(diesel::pg::Pg))]
pub struct User {
    pub id: Uuid,
    pub email: String,
    pub password_hash: String,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub role: String,
    pub is_verified: bool,
    pub verified_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// False once an admin disabled the account: no login, no refresh.
    pub is_active: bool,
    /// When the purge reminder was queued (at most once per account).
    pub reminded_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = users)]
pub struct NewUser {
    pub id: Uuid,
    pub email: String,
    pub password_hash: String,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub role: String,
    pub is_verified: bool,
    pub verified_at: Option<DateTime<Utc>>,
}

/// A partial update. `None` leaves a column alone; `Some(None)` clears it.
#[derive(Debug, Default, AsChangeset)]
#[diesel(table_name = users)]
pub struct UserChanges {
    pub email: Option<String>,
    pub first_name: Option<Option<String>>,
    pub last_name: Option<Option<String>>,
    pub role: Option<String>,
    pub is_verified: Option<bool>,
    pub verified_at: Option<Option<DateTime<Utc>>>,
    pub password_hash: Option<String>,
    pub is_active: Option<bool>,
    pub updated_at: Option<DateTime<Utc>>,
}

impl User {
    pub fn role(&self) -> Role {
        self.role.parse().unwrap_or(Role::User)
    }

    pub fn is_admin(&self) -> bool {
        self.role() == Role::Admin
    }

    pub async fn find(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<User>> {
        users::table
            .find(id)
            .select(User::as_select())
            .first(conn)
            .await
            .optional()
    }

    /// Case-insensitive lookup; uses the `lower(email)` unique index.
    pub async fn find_by_email(
        conn: &mut AsyncPgConnection,
        email: &Email,
    ) -> QueryResult<Option<User>> {
        users::table
            .filter(lower(users::email).eq(email.as_str()))
            .select(User::as_select())
            .first(conn)
            .await
            .optional()
    }

    /// Lock the row for the rest of the transaction.
    pub async fn lock(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<User>> {
        users::table
            .find(id)
            .select(User::as_select())
            .for_update()
            .first(conn)
            .await
            .optional()
    }

    pub async fn update(
        conn: &mut AsyncPgConnection,
        id: Uuid,
        mut changes: UserChanges,
    ) -> QueryResult<Option<User>> {
        changes.updated_at = Some(Utc::now());
        diesel::update(users::table.find(id))
            .set(&changes)
            .returning(User::as_returning())
            .get_result(conn)
            .await
            .optional()
    }

    pub async fn set_password_hash(
        conn: &mut AsyncPgConnection,
        id: Uuid,
        hash: &str,
    ) -> QueryResult<usize> {
        diesel::update(users::table.find(id))
            .set(users::password_hash.eq(hash))
            .execute(conn)
            .await
    }

    /// Mark verified; a no-op for an already verified user.
    pub async fn mark_verified(
        conn: &mut AsyncPgConnection,
        id: Uuid,
    ) -> QueryResult<Option<User>> {
        let now = Utc::now();
        diesel::update(users::table.find(id))
            .set((
                users::is_verified.eq(true),
                users::verified_at.eq(
                    diesel::dsl::sql::<diesel::sql_types::Nullable<Timestamptz>>(
                        "COALESCE(verified_at, now())",
                    ),
                ),
                users::updated_at.eq(now),
            ))
            .returning(User::as_returning())
            .get_result(conn)
            .await
            .optional()
    }

    pub async fn admin_exists(conn: &mut AsyncPgConnection) -> QueryResult<bool> {
        diesel::select(diesel::dsl::exists(
            users::table.filter(users::role.eq(Role::Admin.as_str())),
        ))
        .get_result(conn)
        .await
    }

    pub async fn count(conn: &mut AsyncPgConnection) -> QueryResult<i64> {
        users::table.select(count_star()).first(conn).await
    }

    pub async fn delete(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<bool> {
        let n = diesel::delete(users::table.find(id)).execute(conn).await?;
        Ok(n > 0)
    }

    /// Count users still unverified and created before `cutoff`.
    pub async fn count_stale_unverified(
        conn: &mut AsyncPgConnection,
        cutoff: DateTime<Utc>,
    ) -> QueryResult<i64> {
        users::table
            .filter(users::is_verified.eq(false))
            .filter(users::created_at.lt(cutoff))
            .select(count_star())
            .first(conn)
            .await
    }

    /// Delete one batch of stale unverified users (oldest first). Sessions
    /// and codes go with them through `ON DELETE CASCADE`. The ids are read
    /// without row locks (locking first wrote every row twice; measured in
    /// BENCHMARKS.md, section 4); the outer `AND NOT is_verified` is re-checked on the
    /// latest row version under READ COMMITTED, so a user verified while
    /// the batch runs is kept. A verification in flight only makes the
    /// batch wait for it, for the length of one short transaction.
    pub async fn delete_stale_unverified_batch(
        conn: &mut AsyncPgConnection,
        cutoff: DateTime<Utc>,
        batch: i64,
    ) -> QueryResult<usize> {
        diesel::sql_query(
            // `= ANY(ARRAY(...))` makes each batch primary-key lookups; an
            // `IN (subquery)` plan rescanned every stale row per batch.
            "DELETE FROM users WHERE id = ANY(ARRAY(
                SELECT id FROM users
                WHERE NOT is_verified AND created_at < $1
                ORDER BY created_at
                LIMIT $2))
             AND NOT is_verified",
        )
        .bind::<Timestamptz, _>(cutoff)
        .bind::<BigInt, _>(batch)
        .execute(conn)
        .await
    }
}

impl NewUser {
    pub async fn insert(&self, conn: &mut AsyncPgConnection) -> QueryResult<User> {
        diesel::insert_into(users::table)
            .values(self)
            .returning(User::as_returning())
            .get_result(conn)
            .await
    }
}

/// Filters of the admin user list. `q` is a case-insensitive substring of
/// the email, first name or last name.
#[derive(Debug, Clone, Default)]
pub struct UserFilter {
    pub role: Option<Role>,
    pub is_verified: Option<bool>,
    pub is_active: Option<bool>,
    pub q: Option<String>,
}

/// `%term%` for LIKE/ILIKE, with the wildcards of `term` escaped so that
/// `_` and `%` match themselves.
pub fn contains_pattern(term: &str) -> String {
    let mut pattern = String::with_capacity(term.len() + 2);
    pattern.push('%');
    for c in term.chars() {
        if matches!(c, '\\' | '%' | '_') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

impl User {
    fn filtered(filter: &UserFilter) -> users::BoxedQuery<'static, diesel::pg::Pg> {
        use diesel::sql_types::{Bool, Text};
        let mut query = users::table.into_boxed();
        if let Some(role) = filter.role {
            query = query.filter(users::role.eq(role.as_str()));
        }
        if let Some(verified) = filter.is_verified {
            query = query.filter(users::is_verified.eq(verified));
        }
        if let Some(active) = filter.is_active {
            query = query.filter(users::is_active.eq(active));
        }
        if let Some(term) = &filter.q {
            let pattern = contains_pattern(term);
            // A raw fragment on purpose: diesel never caches a statement
            // that contains one, so PostgreSQL plans every search with the
            // actual pattern. A cached statement soon gets a generic plan
            // that walks the created_at index filtering every row instead
            // of the trigram BitmapOr, which is orders of magnitude slower
            // for a rare term in a large table. Served by the
            // `users_*_trgm_idx` GIN indexes.
            query = query.filter(
                diesel::dsl::sql::<Bool>("(email ILIKE ")
                    .bind::<Text, _>(pattern.clone())
                    .sql(" OR first_name ILIKE ")
                    .bind::<Text, _>(pattern.clone())
                    .sql(" OR last_name ILIKE ")
                    .bind::<Text, _>(pattern)
                    .sql(")"),
            );
        }
        query
    }

    /// Newest first (`created_at DESC, id DESC`), with the total count.
    pub async fn list(
        conn: &mut AsyncPgConnection,
        filter: &UserFilter,
        page: PageRequest,
    ) -> QueryResult<Page<User>> {
        let items = Self::filtered(filter)
            .order((users::created_at.desc(), users::id.desc()))
            .select(User::as_select());
        paginate(conn, Self::filtered(filter).count(), items, page).await
    }

    /// Lock every admin row for the rest of the transaction and return the
    /// ids, in id order so concurrent callers queue instead of deadlocking.
    /// Under READ COMMITTED a caller that waited re-checks the rows: an
    /// admin deleted or demoted meanwhile is no longer returned. Holding
    /// these locks while checking "is another admin left?" makes the
    /// last-admin rule hold when two admins act at the same moment.
    pub async fn active_admin_ids(conn: &mut AsyncPgConnection) -> QueryResult<Vec<Uuid>> {
        users::table
            .filter(users::role.eq(Role::Admin.as_str()))
            .filter(users::is_active.eq(true))
            .select(users::id)
            .load(conn)
            .await
    }

    /// Lock every admin row for the rest of the transaction and return the
    /// ids (see below).
    pub async fn lock_admin_ids(conn: &mut AsyncPgConnection) -> QueryResult<Vec<Uuid>> {
        users::table
            .filter(users::role.eq(Role::Admin.as_str()))
            .order(users::id.asc())
            .select(users::id)
            .for_update()
            .load(conn)
            .await
    }
}

impl User {
    /// Mark, once, the unverified accounts created in `[from, to)` that have
    /// not been reminded, and return them (at most `batch`). The caller
    /// enqueues their emails in the same transaction: the conditional
    /// `reminded_at IS NULL` makes each account reminded exactly once,
    /// however many workers run this at the same moment.
    pub async fn mark_reminded_batch(
        conn: &mut AsyncPgConnection,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        batch: i64,
    ) -> QueryResult<Vec<Uuid>> {
        #[derive(QueryableByName)]
        struct Row {
            #[diesel(sql_type = diesel::sql_types::Uuid)]
            id: Uuid,
        }
        let rows: Vec<Row> = diesel::sql_query(
            "UPDATE users SET reminded_at = now() WHERE id = ANY(ARRAY(
                SELECT id FROM users
                WHERE NOT is_verified AND reminded_at IS NULL
                  AND created_at >= $1 AND created_at < $2
                ORDER BY created_at
                LIMIT $3
                FOR UPDATE SKIP LOCKED))
             AND reminded_at IS NULL AND NOT is_verified
             RETURNING id",
        )
        .bind::<Timestamptz, _>(from)
        .bind::<Timestamptz, _>(to)
        .bind::<BigInt, _>(batch)
        .load(conn)
        .await?;
        Ok(rows.into_iter().map(|r| r.id).collect())
    }

    /// Count what `mark_reminded_batch` would mark (dry runs).
    pub async fn count_due_reminders(
        conn: &mut AsyncPgConnection,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> QueryResult<i64> {
        users::table
            .filter(users::is_verified.eq(false))
            .filter(users::reminded_at.is_null())
            .filter(users::created_at.ge(from))
            .filter(users::created_at.lt(to))
            .select(count_star())
            .first(conn)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_escape_wildcards() {
        assert_eq!(contains_pattern("ada"), "%ada%");
        assert_eq!(contains_pattern("a_b%c\\"), "%a\\_b\\%c\\\\%");
    }
}
