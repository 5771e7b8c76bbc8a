//! One job per file: the handler half of each `gatehouse_shared::jobs` type.
//! Handlers re-read rows and finish quietly when the work is gone or
//! already done: delivery is at least once.

use std::time::Duration;

use chrono::{DateTime, Utc};

use gatehouse_shared::jobs::Job;

use crate::config::WorkerConfig;
use crate::state::WorkerState;

pub mod account_deleted;
pub mod email_change_confirm;
pub mod email_change_notice;
mod notices;
pub mod password_changed;
pub mod password_reset;
pub mod purge;
pub mod purge_reminder;
pub mod rotate_keys;
pub mod verify_email;

/// What the worker does with a job type: the handler signature of the
/// package registry's `BackgroundJob`, plus how its consumer runs.
/// `crate::monitor` builds one apalis consumer per type listed in
/// `gatehouse_shared::for_each_job!`; a listed type without this impl does
/// not compile.
pub trait Handler: Job {
    /// Jobs of this type running at once in one process.
    fn concurrency(config: &WorkerConfig) -> usize {
        config.worker_concurrency as usize
    }

    /// Limit of one attempt; `None` runs as long as it takes.
    fn timeout(config: &WorkerConfig) -> Option<Duration> {
        Some(config.job_timeout)
    }

    /// Do the work. An error is retried (`JOB_RETRIES`, backoff), then
    /// rescheduled by apalis; return `Ok` when there is nothing left to do.
    fn run(self, state: &WorkerState) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// Work on a cron rather than a queue: every worker fires each tick, and
/// the job's `job_runs` row keyed on (job, tick) lets exactly one run it.
/// `crate::monitor` registers each with one line.
pub trait Scheduled {
    /// Label of its cron worker (metrics, worker names).
    const NAME: &'static str;

    /// Its cron expression (6 fields, seconds first).
    fn schedule(config: &WorkerConfig) -> &str;

    /// Run the tick `tick`, unless another worker has claimed it.
    fn run(
        state: &WorkerState,
        tick: DateTime<Utc>,
    ) -> impl Future<Output = anyhow::Result<()>> + Send;
}
