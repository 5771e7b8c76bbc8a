//! Runs of scheduled jobs (the purge, key rotation): one row per executed
//! run, scheduled or requested. A scheduled tick of a job runs exactly once
//! however many workers fire it: the partial unique index on
//! `job_runs(job, scheduled_for)` lets one insert win, and a replica that
//! loses records nothing.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::schema::job_runs;

/// `job` of purge runs.
pub const PURGE_JOB: &str = "purge";
/// `job` of signing-key rotation runs.
pub const ROTATE_KEYS_JOB: &str = "rotate-keys";

/// One run of any job. The row counts are the purge's; other jobs describe
/// what they did in `details`.
#[derive(Debug, Clone, Queryable, Selectable, Identifiable, Insertable)]
#[diesel(table_name = job_runs, check_for_backend(diesel::pg::Pg))]
pub struct JobRun {
    pub id: Uuid,
    pub job: String,
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
    pub details: Option<serde_json::Value>,
}

/// Who started a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// A cron tick; at most one run per (job, tick).
    Schedule(DateTime<Utc>),
    /// An admin request.
    Manual { requested_by: Option<Uuid> },
}

impl JobRun {
    /// A `running` row for `job`, to be claimed.
    pub fn start(job: &str, trigger: Trigger, worker: &str, id: Uuid) -> Self {
        let (kind, scheduled_for, requested_by) = match trigger {
            Trigger::Schedule(at) => ("schedule", Some(at), None),
            Trigger::Manual { requested_by } => ("manual", None, requested_by),
        };
        Self {
            id,
            job: job.into(),
            trigger: kind.into(),
            scheduled_for,
            dry_run: false,
            status: "running".into(),
            started_at: Utc::now(),
            finished_at: None,
            users_deleted: 0,
            sessions_deleted: 0,
            codes_deleted: 0,
            error: None,
            worker: worker.into(),
            requested_by,
            details: None,
        }
    }

    /// Record the start of a run. False when the row exists already:
    /// another replica took this tick, or this request was delivered twice.
    pub async fn claim(&self, conn: &mut AsyncPgConnection) -> QueryResult<bool> {
        let n = diesel::insert_into(job_runs::table)
            .values(self)
            .on_conflict_do_nothing()
            .execute(conn)
            .await?;
        Ok(n == 1)
    }

    /// Close a run with what it did, or why it failed.
    pub async fn finish_with_details(
        conn: &mut AsyncPgConnection,
        id: Uuid,
        details: Option<serde_json::Value>,
        error: Option<&str>,
    ) -> QueryResult<usize> {
        let status = if error.is_some() {
            "failed"
        } else {
            "succeeded"
        };
        diesel::update(job_runs::table.find(id))
            .set((
                job_runs::status.eq(status),
                job_runs::finished_at.eq(Some(Utc::now())),
                job_runs::details.eq(details),
                job_runs::error.eq(error),
            ))
            .execute(conn)
            .await
    }

    pub async fn find(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<Self>> {
        job_runs::table
            .find(id)
            .select(Self::as_select())
            .first(conn)
            .await
            .optional()
    }

    /// Finish time of the newest successful, non-dry run of `job`.
    pub async fn last_success(
        conn: &mut AsyncPgConnection,
        job: &str,
    ) -> QueryResult<Option<DateTime<Utc>>> {
        job_runs::table
            .filter(job_runs::job.eq(job))
            .filter(job_runs::status.eq("succeeded"))
            .filter(job_runs::dry_run.eq(false))
            .select(job_runs::finished_at)
            .order(job_runs::finished_at.desc().nulls_last())
            .first::<Option<DateTime<Utc>>>(conn)
            .await
            .optional()
            .map(Option::flatten)
    }
}
