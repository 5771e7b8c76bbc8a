//! What the worker runs: one supervised apalis consumer per job type (from
//! `gatehouse_shared::for_each_job!`), and one timer per `Scheduled` job
//! (purge, key rotation).
//!
//! No apalis `Monitor`: it restarted failed consumers from a synchronous
//! factory (the pause between restarts blocked a runtime thread), it ran
//! the cron inside the same Redis-bound machinery, and it kept restarting
//! after SIGTERM while Redis was down (issue 11 items 21 and 23). Here each
//! consumer is a task that rebuilds its apalis worker with an async,
//! cancellable pause, and the scheduled jobs are plain timers that need
//! only PostgreSQL.

use std::panic::AssertUnwindSafe;
use std::str::FromStr;
use std::time::{Duration, Instant};

use apalis::layers::retry::backoff::{ExponentialBackoff, ExponentialBackoffMaker, MakeBackoff};
use apalis::layers::retry::{HasherRng, RetryPolicy};
use apalis::prelude::*;
use chrono::Utc;
use futures::FutureExt;
use gatehouse_shared::jobs::check_payload;
use gatehouse_shared::models::OutboxEntry;
use gatehouse_shared::models::outbox::Claim;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::jobs::{self, Handler, Scheduled};
use crate::state::WorkerState;

/// Health slot of the consumer of `queue`.
pub fn consumer_slot(queue: &str) -> String {
    format!("consumer:{queue}")
}

/// Health slot of the timer of a scheduled job.
pub fn schedule_slot(name: &str) -> String {
    format!("schedule:{name}")
}

/// A claim outlives the attempt that holds it by this much; after that it
/// is stale (its holder died) and the next delivery may take the job.
const CLAIM_MARGIN: Duration = Duration::from_secs(5);
/// Lease of jobs without a time limit (the on-demand purge).
const UNLIMITED_JOB_LEASE: Duration = Duration::from_secs(3600);
/// A consumer that ran this long before failing starts again from the
/// shortest pause.
const HEALTHY_RUN: Duration = Duration::from_secs(60);

/// What [`run_job`] did with one delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobOutcome {
    /// This delivery won the claim and ran the handler.
    Ran,
    /// Another delivery holds the job, or it is already done: nothing ran.
    Duplicate,
}

/// Run one delivery of a job: refuse a payload that cannot be trusted
/// (issue 11 item 17), claim its outbox entry so that of two deliveries at
/// once only one runs (item 8), run the handler within its time limit, and
/// give the claim back if it fails so a retry can take it at once.
pub async fn run_job<J: Handler>(job: J, state: &WorkerState) -> Result<JobOutcome, BoxDynError> {
    let id = job.outbox_id();
    if let Err(e) = check_payload(&job, Utc::now()) {
        metrics::counter!("gatehouse_jobs_rejected_total", "queue" => J::QUEUE).increment(1);
        tracing::warn!(queue = J::QUEUE, job = %id, error = %e, "job payload refused; not running it");
        return Err(AbortError::new(e).into());
    }
    let timeout = J::timeout(&state.config);
    let lease = chrono::Duration::from_std(timeout.unwrap_or(UNLIMITED_JOB_LEASE) + CLAIM_MARGIN)?;
    let holder = format!("{}/{}", state.name, uuid::Uuid::now_v7());
    let mut conn = state.db.get().await?;
    match OutboxEntry::claim(&mut conn, id, &holder, lease).await? {
        Claim::Won => {}
        Claim::Busy | Claim::Completed => {
            metrics::counter!("gatehouse_jobs_duplicates_total", "queue" => J::QUEUE).increment(1);
            tracing::info!(queue = J::QUEUE, job = %id, "duplicate delivery: the job is done or running elsewhere; skipping it");
            return Ok(JobOutcome::Duplicate);
        }
        Claim::Missing => {
            metrics::counter!("gatehouse_jobs_rejected_total", "queue" => J::QUEUE).increment(1);
            tracing::warn!(queue = J::QUEUE, job = %id, "job has no outbox entry; not running it");
            return Err(AbortError::new("job has no outbox entry").into());
        }
    }
    drop(conn);
    // The time limit and panics are handled here, not by apalis layers, so
    // that every way out of the attempt releases the claim.
    let attempt = AssertUnwindSafe(job.run(state)).catch_unwind();
    let result = match timeout {
        Some(limit) => tokio::time::timeout(limit, attempt)
            .await
            .unwrap_or_else(|_| Ok(Err(anyhow::anyhow!("timed out after {limit:?}")))),
        None => attempt.await,
    };
    let result = result.unwrap_or_else(|_| Err(anyhow::anyhow!("the job panicked")));
    if let Err(e) = &result {
        tracing::warn!(queue = J::QUEUE, job = %id, error = %format!("{e:#}"), "job failed");
        match state.db.get().await {
            Ok(mut conn) => {
                if let Err(e) = OutboxEntry::release(&mut conn, id, &holder).await {
                    tracing::warn!(job = %id, error = %e, "could not release the claim; it expires with its lease");
                }
            }
            Err(e) => {
                tracing::warn!(job = %id, error = %e, "could not release the claim; it expires with its lease")
            }
        }
    }
    result.map(|()| JobOutcome::Ran).map_err(Into::into)
}

async fn handle<J: Handler>(
    job: J,
    state: Data<WorkerState>,
    attempt: Attempt,
) -> Result<(), BoxDynError> {
    if attempt.current() > 1 {
        metrics::counter!("gatehouse_jobs_retried_total", "queue" => J::QUEUE).increment(1);
    }
    let outcome = run_job(job, &state).await?;
    // Duplicates have their own counter; "done" is work that ran.
    if outcome == JobOutcome::Ran {
        metrics::counter!("gatehouse_jobs_done_total", "queue" => J::QUEUE).increment(1);
    }
    Ok(())
}

/// Count job outcomes and track whether this consumer runs.
fn on_event(
    state: WorkerState,
    queue: &'static str,
) -> impl Fn(&WorkerContext, &Event) + Send + Sync + Clone + 'static {
    move |ctx, event| match event {
        Event::Start => {
            state.workers.set(&consumer_slot(queue), true);
            tracing::info!(worker = ctx.name(), "consumer started");
        }
        Event::Exit => {
            state.workers.set(&consumer_slot(queue), false);
            tracing::info!(worker = ctx.name(), "consumer exited");
        }
        Event::Error(_) => {
            // `run_job` has logged the cause.
            metrics::counter!("gatehouse_jobs_failed_total", "queue" => queue).increment(1);
        }
        _ => {}
    }
}

/// The pause before restart number `run` (1, 2, ...): 0.2 s doubling to
/// 5 s, so a Redis outage is not a hot loop.
fn restart_pause(run: u32) -> Duration {
    Duration::from_millis(200u64.saturating_mul(1 << run.min(5))).min(Duration::from_secs(5))
}

/// Sleep `d` unless shutdown comes first; true when it did.
async fn sleep_or_stop(d: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
    let stopped = tokio::select! {
        () = tokio::time::sleep(d) => false,
        _ = shutdown.wait_for(|stop| *stop) => true,
    };
    stopped || *shutdown.borrow()
}

/// The apalis worker of `J`'s queue, run until `shutdown` or its failure.
/// Built in a plain function and boxed: the future's `Send` bound is then
/// proved here, on concrete types (spawning it from the generic task
/// directly trips the compiler's higher-ranked lifetime checks).
fn consumer<J: Handler>(
    state: &WorkerState,
    conn: redis::aio::ConnectionManager,
    run: u32,
    backoff: &ExponentialBackoff<HasherRng>,
    mut shutdown: watch::Receiver<bool>,
) -> futures::future::BoxFuture<'static, Result<(), WorkerError>> {
    let storage = state
        .queues
        .settings()
        .storage::<J>(conn, J::QUEUE)
        .poll_with_interval(Duration::from_millis(200));
    let worker = WorkerBuilder::new(format!("{}:{}-r{run}", state.name, J::QUEUE))
        .backend(storage)
        .concurrency(J::concurrency(&state.config))
        .retry(
            RetryPolicy::retries(state.config.job_retries)
                .with_backoff(backoff.clone())
                .retry_if(|e: &BoxDynError| e.downcast_ref::<AbortError>().is_none()),
        )
        .catch_panic()
        .data(state.clone())
        .on_event(on_event(state.clone(), J::QUEUE))
        .build(handle::<J>);
    Box::pin(worker.run_until(async move {
        let _ = shutdown.wait_for(|stop| *stop).await;
        Ok::<(), WorkerError>(())
    }))
}

/// Run the consumer of `J`'s queue until shutdown: build an apalis worker
/// on the shared Redis connection, and when it fails (Redis went away),
/// pause and build a new one under a new name. Its health slot is up only
/// between its worker's start and its end.
async fn supervise<J: Handler>(
    state: WorkerState,
    backoff: ExponentialBackoff<HasherRng>,
    mut shutdown: watch::Receiver<bool>,
) {
    let slot = consumer_slot(J::QUEUE);
    let mut run: u32 = 0;
    while !*shutdown.borrow() {
        if run > 0 && sleep_or_stop(restart_pause(run), &mut shutdown).await {
            break;
        }
        run += 1;
        state.workers.set(&slot, false);
        let conn = match state.queues.redis().get().await {
            Ok(conn) => conn,
            Err(e) => {
                tracing::warn!(queue = J::QUEUE, error = %e, "consumer waiting for Redis");
                continue;
            }
        };
        let started = Instant::now();
        let result = consumer::<J>(&state, conn, run, &backoff, shutdown.clone()).await;
        state.workers.set(&slot, false);
        if *shutdown.borrow() {
            break;
        }
        match result {
            Ok(()) => tracing::warn!(queue = J::QUEUE, "consumer stopped; restarting"),
            Err(e) => {
                tracing::error!(queue = J::QUEUE, error = %e, restarts = run, "consumer failed; restarting")
            }
        }
        if started.elapsed() >= HEALTHY_RUN {
            run = 1;
        }
    }
    tracing::info!(queue = J::QUEUE, "consumer stopped");
}

/// Fire `S` on its cron schedule until shutdown. Every worker process
/// fires every tick; `S::run` claims the tick's `job_runs` row, so exactly
/// one runs it. Only PostgreSQL is needed: a Redis outage neither stops
/// nor delays it (issue 11 item 21).
async fn schedule<S: Scheduled>(
    state: WorkerState,
    schedule: cron::Schedule,
    mut shutdown: watch::Receiver<bool>,
) {
    let slot = schedule_slot(S::NAME);
    state.workers.set(&slot, true);
    // Sleep in short steps, so a wall-clock jump (NTP, a suspended VM)
    // delays a tick by at most one step.
    let step = Duration::from_secs(10);
    'ticks: while let Some(tick) = schedule.upcoming(Utc).next() {
        loop {
            let left = (tick - Utc::now()).to_std().unwrap_or_default();
            if left.is_zero() {
                break;
            }
            if sleep_or_stop(left.min(step), &mut shutdown).await {
                break 'ticks;
            }
        }
        match AssertUnwindSafe(S::run(&state, tick)).catch_unwind().await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(job = S::NAME, %tick, error = %format!("{e:#}"), "scheduled run failed")
            }
            Err(_) => tracing::error!(job = S::NAME, %tick, "scheduled run panicked"),
        }
    }
    state.workers.set(&slot, false);
}

/// Start every consumer and scheduled job; once `shutdown` turns true,
/// give them `SHUTDOWN_TIMEOUT` to finish in-flight work, then return
/// whatever Redis is doing (issue 11 item 23).
pub async fn run(state: &WorkerState, shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
    let config = &state.config;
    let purge = cron::Schedule::from_str(&config.purge_schedule)?;
    let rotation = cron::Schedule::from_str(&config.key_rotation_schedule)?;
    let backoff = ExponentialBackoffMaker::new(
        Duration::from_millis(500),
        Duration::from_secs(30),
        0.5,
        HasherRng::default(),
    )?
    .make_backoff();
    let mut tasks = JoinSet::new();
    // Scheduled jobs first: they must not wait for Redis. One line each.
    state
        .workers
        .expect(&schedule_slot(jobs::purge::ScheduledPurge::NAME));
    tasks.spawn(schedule::<jobs::purge::ScheduledPurge>(
        state.clone(),
        purge,
        shutdown.clone(),
    ));
    state
        .workers
        .expect(&schedule_slot(jobs::rotate_keys::RotateKeys::NAME));
    tasks.spawn(schedule::<jobs::rotate_keys::RotateKeys>(
        state.clone(),
        rotation,
        shutdown.clone(),
    ));
    macro_rules! supervise_each {
        ($($job:ty),* $(,)?) => {
            $(
                state.workers.expect(&consumer_slot(<$job as gatehouse_shared::jobs::Job>::QUEUE));
                tasks.spawn(supervise::<$job>(state.clone(), backoff.clone(), shutdown.clone()));
            )*
        };
    }
    gatehouse_shared::for_each_job!(supervise_each);

    let mut signal = shutdown.clone();
    let _ = signal.wait_for(|stop| *stop).await;
    tracing::info!("shutdown signal received; finishing in-flight jobs");
    let drained = tokio::time::timeout(config.shutdown_timeout, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            timeout = ?config.shutdown_timeout,
            "in-flight work did not finish within SHUTDOWN_TIMEOUT; stopping anyway (unfinished jobs are redelivered)"
        );
        tasks.abort_all();
    }
    Ok(())
}
