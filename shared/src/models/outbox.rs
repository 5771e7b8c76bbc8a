use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::schema::outbox;

/// A job written in the same transaction as the change that causes it.
#[derive(Debug, Clone, Queryable, Selectable, Identifiable)]
#[diesel(table_name = outbox, check_for_backend(diesel::pg::Pg))]
pub struct OutboxEntry {
    pub id: Uuid,
    pub queue: String,
    pub payload: serde_json::Value,
    pub user_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub enqueued_at: Option<DateTime<Utc>>,
    pub attempts: i32,
    pub completed_at: Option<DateTime<Utc>>,
    /// When a worker took this job (see [`OutboxEntry::claim`]).
    pub claimed_at: Option<DateTime<Utc>>,
    /// Who holds the claim: `{worker}/{claim id}`.
    pub claimed_by: Option<String>,
}

/// The result of [`OutboxEntry::claim`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This caller holds the entry until it completes or releases it.
    Won,
    /// Another worker holds a live claim: it is doing the work right now.
    Busy,
    /// The work is already done.
    Completed,
    /// No such entry: a payload that does not come from our outbox.
    Missing,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = outbox)]
pub struct NewOutboxEntry {
    pub id: Uuid,
    pub queue: String,
    pub payload: serde_json::Value,
    pub user_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
}

impl NewOutboxEntry {
    pub async fn insert(&self, conn: &mut AsyncPgConnection) -> QueryResult<OutboxEntry> {
        diesel::insert_into(outbox::table)
            .values(self)
            .returning(OutboxEntry::as_returning())
            .get_result(conn)
            .await
    }
}

impl OutboxEntry {
    pub async fn mark_enqueued(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<usize> {
        diesel::update(outbox::table.find(id).filter(outbox::enqueued_at.is_null()))
            .set((
                outbox::enqueued_at.eq(Some(Utc::now())),
                outbox::attempts.eq(outbox::attempts + 1),
            ))
            .execute(conn)
            .await
    }

    /// Undo a claim whose push failed, so the next sweep retries it.
    pub async fn unclaim(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<usize> {
        diesel::update(
            outbox::table
                .find(id)
                .filter(outbox::completed_at.is_null()),
        )
        .set(outbox::enqueued_at.eq(None::<DateTime<Utc>>))
        .execute(conn)
        .await
    }

    pub async fn mark_completed(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<usize> {
        diesel::update(
            outbox::table
                .find(id)
                .filter(outbox::completed_at.is_null()),
        )
        .set(outbox::completed_at.eq(Some(Utc::now())))
        .execute(conn)
        .await
    }

    /// Take the entry for one attempt, atomically: one `UPDATE` that only
    /// succeeds when the entry is not completed and nobody holds a claim
    /// younger than `lease`. Of two deliveries of the same job running at
    /// once, exactly one wins (issue 11 item 8). `holder` must be unique per
    /// attempt, so a stale holder's release never frees a newer claim.
    pub async fn claim(
        conn: &mut AsyncPgConnection,
        id: Uuid,
        holder: &str,
        lease: chrono::Duration,
    ) -> QueryResult<Claim> {
        let now = Utc::now();
        let won = diesel::update(
            outbox::table
                .find(id)
                .filter(outbox::completed_at.is_null())
                .filter(
                    outbox::claimed_at
                        .is_null()
                        .or(outbox::claimed_at.lt(now - lease)),
                ),
        )
        .set((
            outbox::claimed_at.eq(Some(now)),
            outbox::claimed_by.eq(Some(holder)),
        ))
        .execute(conn)
        .await?;
        if won == 1 {
            return Ok(Claim::Won);
        }
        Ok(match Self::find(conn, id).await? {
            None => Claim::Missing,
            Some(e) if e.completed_at.is_some() => Claim::Completed,
            Some(_) => Claim::Busy,
        })
    }

    /// Give a claim back after a failed attempt, so a retry or a later
    /// delivery can take the entry at once. Only `holder`'s own claim.
    pub async fn release(
        conn: &mut AsyncPgConnection,
        id: Uuid,
        holder: &str,
    ) -> QueryResult<usize> {
        diesel::update(
            outbox::table
                .find(id)
                .filter(outbox::claimed_by.eq(holder))
                .filter(outbox::completed_at.is_null()),
        )
        // `claimed_by` stays: it marks the entry as attempted (see
        // `take_unclaimed_enqueued_before`).
        .set(outbox::claimed_at.eq(None::<DateTime<Utc>>))
        .execute(conn)
        .await
    }

    /// Entries pushed to Redis before `before` that no worker has taken
    /// yet: after Redis lost its data (restarted empty, flushed) they are
    /// nowhere but here. Restamps and returns them, for the relay to push
    /// again (issue 11 item 22). A duplicate is harmless: the claim lets
    /// one delivery run. `never_attempted` keeps only entries no attempt
    /// ever claimed (a failed attempt's retries are apalis's business).
    pub async fn take_unclaimed_enqueued_before(
        conn: &mut AsyncPgConnection,
        queues: &[&str],
        before: DateTime<Utc>,
        never_attempted: bool,
        limit: i64,
    ) -> QueryResult<Vec<OutboxEntry>> {
        conn.transaction(async |conn| {
            let any_attempt = if never_attempted { "FALSE" } else { "TRUE" };
            let due: Vec<OutboxEntry> = outbox::table
                .filter(
                    outbox::claimed_by
                        .is_null()
                        .or(diesel::dsl::sql::<diesel::sql_types::Bool>(any_attempt)),
                )
                .filter(outbox::queue.eq_any(queues))
                .filter(outbox::completed_at.is_null())
                .filter(outbox::claimed_at.is_null())
                .filter(outbox::enqueued_at.lt(before))
                .order(outbox::created_at.asc())
                .limit(limit)
                .select(OutboxEntry::as_select())
                .for_update()
                .skip_locked()
                .load(conn)
                .await?;
            stamp_relayed(conn, &due).await?;
            Ok(due)
        })
        .await
    }

    pub async fn find(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<OutboxEntry>> {
        outbox::table
            .find(id)
            .select(OutboxEntry::as_select())
            .first(conn)
            .await
            .optional()
    }

    /// Claim entries that need (re)delivery: never enqueued and older than
    /// `fresh_before`, or enqueued before `stale_before` and still not done.
    /// `SKIP LOCKED` lets several relays run at once without double pushes;
    /// the claim stamps `enqueued_at` so the next sweep waits again.
    pub async fn claim_due(
        conn: &mut AsyncPgConnection,
        fresh_before: DateTime<Utc>,
        stale_before: DateTime<Utc>,
        limit: i64,
    ) -> QueryResult<Vec<OutboxEntry>> {
        conn.transaction(async |conn| {
            let due: Vec<OutboxEntry> = outbox::table
                .filter(outbox::completed_at.is_null())
                .filter(
                    outbox::enqueued_at
                        .is_null()
                        .and(outbox::created_at.lt(fresh_before))
                        .or(outbox::enqueued_at.lt(stale_before)),
                )
                .order(outbox::created_at.asc())
                .limit(limit)
                .select(OutboxEntry::as_select())
                .for_update()
                .skip_locked()
                .load(conn)
                .await?;
            stamp_relayed(conn, &due).await?;
            Ok(due)
        })
        .await
    }

    /// Jobs of one queue requested for a user since `since` (cooldowns, caps).
    pub async fn recent_for_user(
        conn: &mut AsyncPgConnection,
        user_id: Uuid,
        queue: &str,
        since: DateTime<Utc>,
    ) -> QueryResult<Vec<DateTime<Utc>>> {
        outbox::table
            .filter(outbox::user_id.eq(user_id))
            .filter(outbox::queue.eq(queue))
            .filter(outbox::created_at.ge(since))
            .select(outbox::created_at)
            .order(outbox::created_at.desc())
            .load(conn)
            .await
    }

    pub async fn pending_count(conn: &mut AsyncPgConnection) -> QueryResult<i64> {
        outbox::table
            .filter(outbox::completed_at.is_null())
            .count()
            .get_result(conn)
            .await
    }

    /// Forget completed entries older than `before`.
    pub async fn delete_completed_before(
        conn: &mut AsyncPgConnection,
        before: DateTime<Utc>,
    ) -> QueryResult<usize> {
        diesel::delete(outbox::table.filter(outbox::completed_at.lt(before)))
            .execute(conn)
            .await
    }
}

/// Stamp entries a relay just claimed: `enqueued_at` now (the next sweep
/// waits again) and one more attempt. In the claiming transaction.
async fn stamp_relayed(conn: &mut AsyncPgConnection, claimed: &[OutboxEntry]) -> QueryResult<()> {
    let ids: Vec<Uuid> = claimed.iter().map(|e| e.id).collect();
    if !ids.is_empty() {
        diesel::update(outbox::table.filter(outbox::id.eq_any(&ids)))
            .set((
                outbox::enqueued_at.eq(Some(Utc::now())),
                outbox::attempts.eq(outbox::attempts + 1),
            ))
            .execute(conn)
            .await?;
    }
    Ok(())
}
