//! The purge: delete accounts still unverified `UNVERIFIED_TTL` after
//! signup, dead sessions, expired codes and old outbox rows. Batched, so no
//! statement holds locks for long; idempotent, so a rerun changes nothing.

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use diesel_async::AsyncConnection;
use gatehouse_shared::jobs::{self, RunPurge, SendPurgeReminder};
use gatehouse_shared::models::purge_run::PurgeCounts;
use gatehouse_shared::models::{
    EmailVerification, OutboxEntry, PurgeRun, Revocation, Session, User,
};
use uuid::Uuid;

use super::{Handler, Scheduled};
use crate::config::WorkerConfig;
use crate::state::WorkerState;

impl Handler for RunPurge {
    /// One run at a time per process; runs are long and serial anyway.
    fn concurrency(_: &WorkerConfig) -> usize {
        1
    }

    /// A purge runs as long as its batches take.
    fn timeout(_: &WorkerConfig) -> Option<std::time::Duration> {
        None
    }

    async fn run(self, state: &WorkerState) -> anyhow::Result<()> {
        run_requested(state, &self).await.map(|_| ())
    }
}

/// Revoked sessions are kept this long before deletion.
const KEEP_REVOKED: i64 = 1;
/// Revocation-feed entries are kept one access-token lifetime plus this.
const FEED_MARGIN_MINUTES: i64 = 5;
/// Completed outbox rows are kept this long.
const KEEP_OUTBOX_DAYS: i64 = 7;

/// The scheduled purge (`PURGE_SCHEDULE`).
pub struct ScheduledPurge;

impl Scheduled for ScheduledPurge {
    const NAME: &'static str = "purge-schedule";

    fn schedule(config: &WorkerConfig) -> &str {
        &config.purge_schedule
    }

    async fn run(state: &WorkerState, tick: DateTime<Utc>) -> anyhow::Result<()> {
        let run = run_scheduled(state, tick).await?;
        if run.is_some() {
            // The replica that won the tick also trims finished jobs in
            // Redis, in the background: with Redis stalled the vacuum waits
            // for its timeouts, and the timer must not miss the next tick
            // meanwhile (issue 11 item 21).
            let state = state.clone();
            tokio::spawn(async move {
                let day = std::time::Duration::from_secs(24 * 3600);
                if let Err(e) = crate::relay::vacuum_queues(&state, day, 7 * day).await {
                    tracing::warn!(error = %format!("{e:#}"), "queue vacuum failed");
                }
            });
        }
        Ok(())
    }
}

/// Run on a cron tick. Exactly one replica records and runs each tick: the
/// partial unique index on `job_runs(job, scheduled_for)` lets one insert
/// win.
pub async fn run_scheduled(
    state: &WorkerState,
    tick: DateTime<Utc>,
) -> anyhow::Result<Option<PurgeRun>> {
    let run = PurgeRun::start(
        "schedule",
        Some(tick),
        false,
        &state.name,
        None,
        Uuid::now_v7(),
    );
    execute(state, run).await
}

/// Run an admin request from the queue. The run id is the outbox id, so a
/// redelivered job does not run twice.
pub async fn run_requested(
    state: &WorkerState,
    job: &RunPurge,
) -> anyhow::Result<Option<PurgeRun>> {
    let run = PurgeRun::start(
        "manual",
        None,
        job.dry_run,
        &state.name,
        job.requested_by,
        job.outbox_id,
    );
    let result = execute(state, run).await?;
    let mut conn = state.db.get().await?;
    OutboxEntry::mark_completed(&mut conn, job.outbox_id).await?;
    Ok(result)
}

async fn execute(state: &WorkerState, run: PurgeRun) -> anyhow::Result<Option<PurgeRun>> {
    let mut conn = state.db.get().await?;
    if !run.claim(&mut conn).await? {
        tracing::debug!(run = %run.id, "purge run already claimed elsewhere; skipping");
        return Ok(None);
    }
    drop(conn);
    let started = std::time::Instant::now();
    let result = purge(state, run.dry_run).await;
    let mut conn = state.db.get().await?;
    let (counts, error) = match &result {
        Ok(c) => (*c, None),
        Err(e) => (PurgeCounts::default(), Some(format!("{e:#}"))),
    };
    PurgeRun::finish(&mut conn, run.id, counts, error.as_deref()).await?;
    let status = if error.is_some() {
        "failed"
    } else {
        "succeeded"
    };
    metrics::counter!("gatehouse_purge_runs_total", "status" => status, "dry_run" => run.dry_run.to_string()).increment(1);
    if error.is_none() && !run.dry_run {
        metrics::counter!("gatehouse_purge_rows_total", "kind" => "users")
            .increment(counts.users as u64);
        metrics::counter!("gatehouse_purge_rows_total", "kind" => "sessions")
            .increment(counts.sessions as u64);
        metrics::counter!("gatehouse_purge_rows_total", "kind" => "codes")
            .increment(counts.codes as u64);
        metrics::counter!("gatehouse_purge_reminders_queued_total")
            .increment(counts.reminders as u64);
        metrics::gauge!("gatehouse_purge_last_success_timestamp_seconds")
            .set(Utc::now().timestamp() as f64);
    }
    tracing::info!(
        run = %run.id, trigger = %run.trigger, dry_run = run.dry_run, status,
        users = counts.users, sessions = counts.sessions, codes = counts.codes,
        reminders = counts.reminders,
        elapsed_ms = started.elapsed().as_millis() as u64, "purge run finished"
    );
    let finished = PurgeRun::find(&mut conn, run.id).await?;
    result.map(|_| finished)
}

/// The purge itself. A dry run only counts.
pub async fn purge(state: &WorkerState, dry_run: bool) -> anyhow::Result<PurgeCounts> {
    let ttl = ChronoDuration::from_std(state.config.unverified_ttl)?;
    let cutoff = Utc::now() - ttl;
    let revoked_before = Utc::now() - ChronoDuration::days(KEEP_REVOKED);
    let batch = state.config.purge_batch_size;
    let mut conn = state.db.get().await?;
    if dry_run {
        return Ok(PurgeCounts {
            users: User::count_stale_unverified(&mut conn, cutoff).await?,
            sessions: Session::count_dead(&mut conn, revoked_before).await?,
            codes: EmailVerification::count_expired(&mut conn).await?,
            reminders: {
                let (from, to) = reminder_window(state, cutoff)?;
                User::count_due_reminders(&mut conn, from, to).await?
            },
        });
    }
    PurgeRun::fail_abandoned(&mut conn, Utc::now() - ChronoDuration::hours(1)).await?;
    let mut counts = PurgeCounts {
        reminders: remind(state, cutoff).await?,
        ..PurgeCounts::default()
    };
    loop {
        let n = User::delete_stale_unverified_batch(&mut conn, cutoff, batch).await? as i64;
        counts.users += n;
        if n < batch {
            break;
        }
    }
    loop {
        let n = Session::delete_dead_batch(&mut conn, revoked_before, batch).await? as i64;
        counts.sessions += n;
        if n < batch {
            break;
        }
    }
    counts.codes = EmailVerification::delete_expired(&mut conn).await? as i64;
    // Revocation-feed entries outlive every token they could refuse by a
    // margin (verifiers' clock leeway).
    let feed_ttl = ChronoDuration::from_std(state.config.tokens.access_token_ttl)?
        + ChronoDuration::minutes(FEED_MARGIN_MINUTES);
    Revocation::delete_before(&mut conn, Utc::now() - feed_ttl).await?;
    OutboxEntry::delete_completed_before(
        &mut conn,
        Utc::now() - ChronoDuration::days(KEEP_OUTBOX_DAYS),
    )
    .await?;
    Ok(counts)
}

/// Accounts due a reminder: unverified, created in `[cutoff, cutoff + lead)`,
/// so purged by a run within the next `PURGE_REMINDER_LEAD`. Accounts
/// already past the cutoff are left out: this run deletes them (a reminder
/// could not arrive in time). With more time, this would hold back the
/// purge of an account until a day after its reminder, for a schedule
/// that missed every tick of a whole lead time.
fn reminder_window(
    state: &WorkerState,
    cutoff: DateTime<Utc>,
) -> anyhow::Result<(DateTime<Utc>, DateTime<Utc>)> {
    let lead = ChronoDuration::from_std(state.config.purge_reminder_lead)?;
    Ok((cutoff, cutoff + lead))
}

/// Queue the purge reminders that are due. Each batch marks its accounts
/// (`reminded_at`, conditional) and writes their outbox rows in one
/// transaction: an account is reminded exactly once, however many workers
/// or runs get here, and a crash loses no reminder. Returns how many were
/// queued.
pub async fn remind(state: &WorkerState, cutoff: DateTime<Utc>) -> anyhow::Result<i64> {
    let (from, to) = reminder_window(state, cutoff)?;
    let batch = state.config.purge_batch_size;
    let mut conn = state.db.get().await?;
    let mut total = 0;
    loop {
        let entries = conn
            .transaction::<_, diesel::result::Error, _>(async |conn| {
                let ids = User::mark_reminded_batch(conn, from, to, batch).await?;
                let mut entries = Vec::with_capacity(ids.len());
                for id in ids {
                    entries.push(jobs::enqueue(conn, &SendPurgeReminder::new(id)).await?);
                }
                Ok(entries)
            })
            .await?;
        let n = entries.len() as i64;
        total += n;
        for entry in &entries {
            // A failed push only delays the email: the relay sweeps it.
            if state.queues.dispatch(entry).await.is_ok() {
                OutboxEntry::mark_enqueued(&mut conn, entry.id).await?;
            }
        }
        if n < batch {
            break;
        }
    }
    Ok(total)
}
