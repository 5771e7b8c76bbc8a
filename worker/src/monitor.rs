//! The apalis monitor: one consumer per job type (from
//! `gatehouse_shared::for_each_job!`), plus the cron worker of the
//! scheduled purge.

use std::str::FromStr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use apalis::layers::TimeoutLayer;
use apalis::layers::retry::backoff::{ExponentialBackoff, ExponentialBackoffMaker, MakeBackoff};
use apalis::layers::retry::{HasherRng, RetryPolicy};
use apalis::prelude::*;
use apalis_cron::{CronScheduler, Tick};
use redis::aio::ConnectionManager;
use tokio::sync::watch;

use crate::jobs::{self, Handler};
use crate::relay;
use crate::state::WorkerState;

/// Name of the cron worker in metrics labels.
const SCHEDULE: &str = "purge-schedule";

/// Workers a healthy process runs: one consumer per job type and the cron.
pub fn expected_workers() -> i64 {
    gatehouse_shared::jobs::KINDS.len() as i64 + 1
}

/// What every consumer is built from.
struct Consumers {
    state: WorkerState,
    conn: ConnectionManager,
    backoff: ExponentialBackoff<HasherRng>,
    poll: Duration,
}

impl Consumers {
    /// Register the consumer of `J`'s queue: bounded concurrency, in-process
    /// retries with backoff, `J`'s timeout, panics caught, outcomes counted.
    fn register<J: Handler>(&self, monitor: Monitor) -> Monitor {
        let state = self.state.clone();
        let storage = state
            .queues
            .settings()
            .storage::<J>(self.conn.clone(), J::QUEUE);
        let (backoff, poll) = (self.backoff.clone(), self.poll);
        let retries = state.config.job_retries;
        let concurrency = J::concurrency(&state.config);
        let timeout = J::timeout(&state.config);
        monitor.register(move |run: usize| {
            restart_pause(run);
            WorkerBuilder::new(format!("{}:{}-r{run}", state.name, J::QUEUE))
                .backend(storage.clone().poll_with_interval(poll))
                .concurrency(concurrency)
                .retry(
                    RetryPolicy::retries(retries)
                        .with_backoff(backoff.clone())
                        .retry_if(|e: &BoxDynError| e.downcast_ref::<AbortError>().is_none()),
                )
                .option_layer(timeout.map(TimeoutLayer::new))
                .catch_panic()
                .data(state.clone())
                .on_event(on_event(state.clone(), J::QUEUE))
                .build(handle::<J>)
        })
    }
}

async fn handle<J: Handler>(
    job: J,
    state: Data<WorkerState>,
    attempt: Attempt,
) -> Result<(), BoxDynError> {
    if attempt.current() > 1 {
        metrics::counter!("gatehouse_jobs_retried_total", "queue" => J::QUEUE).increment(1);
    }
    let id = job.outbox_id();
    job.run(&state).await.map_err(|e| {
        tracing::warn!(queue = J::QUEUE, job = %id, attempt = attempt.current(), error = %format!("{e:#}"), "job failed");
        e.into()
    })
}

async fn handle_tick(tick: Tick, state: Data<WorkerState>) -> Result<(), BoxDynError> {
    let at = chrono::DateTime::<chrono::Utc>::from_timestamp(tick.get_timestamp() as i64, 0)
        .ok_or_else(|| AbortError::new("tick out of range"))?;
    let run = jobs::purge::run_scheduled(&state, at).await?;
    if run.is_some() {
        // The replica that won the tick also trims finished jobs in Redis.
        let day = Duration::from_secs(24 * 3600);
        if let Err(e) = relay::vacuum_queues(&state, day, 7 * day).await {
            tracing::warn!(error = %format!("{e:#}"), "queue vacuum failed");
        }
    }
    Ok(())
}

/// Count job outcomes and track which workers are alive.
fn on_event(
    state: WorkerState,
    queue: &'static str,
) -> impl Fn(&WorkerContext, &Event) + Send + Sync + Clone + 'static {
    move |ctx, event| match event {
        Event::Start => {
            state.live_workers.fetch_add(1, Ordering::Relaxed);
            tracing::info!(worker = ctx.name(), "worker started");
        }
        Event::Exit => {
            state.live_workers.fetch_sub(1, Ordering::Relaxed);
            tracing::info!(worker = ctx.name(), "worker exited");
        }
        Event::Success(_) => {
            metrics::counter!("gatehouse_jobs_done_total", "queue" => queue).increment(1)
        }
        Event::Error(e) => {
            metrics::counter!("gatehouse_jobs_failed_total", "queue" => queue).increment(1);
            tracing::warn!(worker = ctx.name(), error = %e, "job failed");
        }
        _ => {}
    }
}

/// apalis restarts a failed worker at once; while Redis is down that is a
/// hot loop. The factory runs on the monitor's task, so pause there (off the
/// async scheduler): 0 s for the first start, then 0.2 s doubling to 5 s.
fn restart_pause(run: usize) {
    if run == 0 {
        return;
    }
    let pause =
        Duration::from_millis(200u64.saturating_mul(1 << run.min(5))).min(Duration::from_secs(5));
    tokio::task::block_in_place(|| std::thread::sleep(pause));
}

/// Run every consumer and the cron worker until `shutdown_rx` turns true,
/// then give in-flight jobs `SHUTDOWN_TIMEOUT`.
pub async fn run_monitor(
    state: &WorkerState,
    conn: ConnectionManager,
    mut shutdown_rx: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let config = &state.config;
    let schedule = cron::Schedule::from_str(&config.purge_schedule)?;
    let consumers = Consumers {
        state: state.clone(),
        conn,
        backoff: ExponentialBackoffMaker::new(
            Duration::from_millis(500),
            Duration::from_secs(30),
            0.5,
            HasherRng::default(),
        )?
        .make_backoff(),
        poll: Duration::from_millis(200),
    };
    let mut monitor = Monitor::new();
    macro_rules! register_each {
        ($($job:ty),* $(,)?) => {
            $(monitor = consumers.register::<$job>(monitor);)*
        };
    }
    gatehouse_shared::for_each_job!(register_each);
    let cron = {
        let state = state.clone();
        move |run: usize| {
            restart_pause(run);
            WorkerBuilder::new(format!("{}:cron-r{run}", state.name))
                .backend(CronScheduler::new(schedule.clone()))
                .concurrency(1)
                .catch_panic()
                .data(state.clone())
                .on_event(on_event(state.clone(), SCHEDULE))
                .build(handle_tick)
        }
    };
    monitor
        .register(cron)
        // A worker whose backend failed (e.g. Redis dropped) restarts under
        // a new name, after a growing pause (see `restart_pause`); /health
        // is red while it is down.
        .should_restart(|ctx, err| {
            tracing::error!(worker = ctx.name(), error = %err, restarts = ctx.restarts(), "worker failed; restarting");
            true
        })
        .shutdown_timeout(config.shutdown_timeout)
        .run_with_signal(async move {
            let _ = shutdown_rx.wait_for(|stop| *stop).await;
            tracing::info!("shutdown signal received; finishing in-flight jobs");
            Ok(())
        })
        .await?;
    Ok(())
}
