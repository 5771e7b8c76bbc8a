use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::{Page, PageRequest, paginate};
// Purge runs are the `purge` rows of `job_runs` (runs of every scheduled job).
use crate::schema::job_runs as purge_runs;

#[derive(Debug, Clone, Queryable, Selectable, Identifiable, Insertable)]
#[diesel(table_name = purge_runs, check_for_backend(diesel::pg::Pg))]
pub struct PurgeRun {
    pub id: Uuid,
    pub trigger: String,
    pub scheduled_for: Option<DateTime<Utc>>,
    pub dry_run: bool,
    pub status: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub users_deleted: i64,
    pub sessions_deleted: i64,
    pub codes_deleted: i64,
    pub error: Option<String>,
    pub worker: String,
    pub requested_by: Option<Uuid>,
    /// `purge`, or another scheduled job (`rotate-keys`).
    pub job: String,
    /// What a run of another job did (the purge's are the row counts).
    pub details: Option<serde_json::Value>,
}

/// What a finished run removed (or would remove, for a dry run).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PurgeCounts {
    pub users: i64,
    pub sessions: i64,
    pub codes: i64,
    /// Purge reminders queued by this run (or due, for a dry run); kept in
    /// the run's `details` as `reminders_queued`.
    pub reminders: i64,
}

impl PurgeRun {
    pub fn start(
        trigger: &str,
        scheduled_for: Option<DateTime<Utc>>,
        dry_run: bool,
        worker: &str,
        requested_by: Option<Uuid>,
        id: Uuid,
    ) -> Self {
        Self {
            id,
            trigger: trigger.into(),
            scheduled_for,
            dry_run,
            status: "running".into(),
            started_at: Utc::now(),
            finished_at: None,
            users_deleted: 0,
            sessions_deleted: 0,
            codes_deleted: 0,
            error: None,
            worker: worker.into(),
            requested_by,
            job: super::job_run::PURGE_JOB.into(),
            details: None,
        }
    }

    /// Record the start of a run. Returns false when the row exists already:
    /// another replica took this tick, or this manual run was delivered twice.
    pub async fn claim(&self, conn: &mut AsyncPgConnection) -> QueryResult<bool> {
        let n = diesel::insert_into(purge_runs::table)
            .values(self)
            .on_conflict_do_nothing()
            .execute(conn)
            .await?;
        Ok(n == 1)
    }

    pub async fn find(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<Self>> {
        purge_runs::table
            .find(id)
            .select(Self::as_select())
            .first(conn)
            .await
            .optional()
    }

    pub async fn finish(
        conn: &mut AsyncPgConnection,
        id: Uuid,
        counts: PurgeCounts,
        error: Option<&str>,
    ) -> QueryResult<usize> {
        let status = if error.is_some() {
            "failed"
        } else {
            "succeeded"
        };
        diesel::update(purge_runs::table.find(id))
            .set((
                purge_runs::status.eq(status),
                purge_runs::finished_at.eq(Some(Utc::now())),
                purge_runs::users_deleted.eq(counts.users),
                purge_runs::sessions_deleted.eq(counts.sessions),
                purge_runs::codes_deleted.eq(counts.codes),
                purge_runs::details.eq(Some(
                    serde_json::json!({ "reminders_queued": counts.reminders }),
                )),
                purge_runs::error.eq(error),
            ))
            .execute(conn)
            .await
    }

    /// Close runs left `running` by a worker that died mid-run.
    pub async fn fail_abandoned(
        conn: &mut AsyncPgConnection,
        started_before: DateTime<Utc>,
    ) -> QueryResult<usize> {
        diesel::update(
            purge_runs::table
                .filter(purge_runs::status.eq("running"))
                .filter(purge_runs::started_at.lt(started_before)),
        )
        .set((
            purge_runs::status.eq("failed"),
            purge_runs::finished_at.eq(Some(Utc::now())),
            purge_runs::error.eq(Some("abandoned: the worker stopped during the run")),
        ))
        .execute(conn)
        .await
    }

    /// Newest first, with the total count.
    pub async fn list(conn: &mut AsyncPgConnection, page: PageRequest) -> QueryResult<Page<Self>> {
        let items = purge_runs::table
            .order((purge_runs::started_at.desc(), purge_runs::id.desc()))
            .select(Self::as_select());
        paginate(conn, purge_runs::table.count(), items, page).await
    }

    /// Finish time of the newest successful, non-dry run.
    pub async fn last_success(conn: &mut AsyncPgConnection) -> QueryResult<Option<DateTime<Utc>>> {
        purge_runs::table
            .filter(purge_runs::job.eq(super::job_run::PURGE_JOB))
            .filter(purge_runs::status.eq("succeeded"))
            .filter(purge_runs::dry_run.eq(false))
            .select(purge_runs::finished_at)
            .order(purge_runs::finished_at.desc().nulls_last())
            .first::<Option<DateTime<Utc>>>(conn)
            .await
            .optional()
            .map(Option::flatten)
    }
}
