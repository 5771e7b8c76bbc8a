//! Gatehouse worker: consumes the Redis queues (verification emails,
//! on-demand purges), fires the scheduled purge, relays the outbox, and
//! serves `/health` and `/metrics`.

pub mod config;
pub mod http;
pub mod jobs;
pub mod mailer;
pub mod relay;
pub mod state;

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use apalis::layers::retry::backoff::{ExponentialBackoffMaker, MakeBackoff};
use apalis::layers::retry::{HasherRng, RetryPolicy};
use apalis::prelude::*;
use apalis_cron::{CronScheduler, Tick};
use gatehouse_shared::jobs::{PURGE_QUEUE, RunPurge, SendVerificationEmail, VERIFY_EMAIL_QUEUE};
use gatehouse_shared::queue::{QueueSettings, Queues, Redis};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::sync::watch;

use crate::config::WorkerConfig;
use crate::state::{Inner, WorkerState};

/// `worker-{hostname}-{ulid}`: unique per process, so apalis heartbeats
/// and orphan recovery never confuse two replicas.
pub fn default_worker_name() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "local".into());
    format!(
        "worker-{host}-{}",
        ulid::Ulid::new().to_string().to_lowercase()
    )
}

pub fn build_state(config: WorkerConfig) -> anyhow::Result<WorkerState> {
    config.validate().map_err(anyhow::Error::msg)?;
    let db = gatehouse_shared::db::build_pool(&config.db)?;
    let redis = Redis::new(&config.redis)?;
    let mut settings = QueueSettings::new(&config.redis.redis_namespace);
    settings.heartbeat = config.queue_heartbeat;
    settings.missed_heartbeats = config.queue_missed_heartbeats;
    settings.batch_size = config.worker_concurrency as usize;
    let queues = Queues::new(redis, settings);
    let mailer = mailer::Mailer::new(&config)?;
    let name = config
        .worker_name
        .clone()
        .unwrap_or_else(default_worker_name);
    Ok(WorkerState(Arc::new(Inner {
        config,
        db,
        queues,
        mailer,
        name,
        live_workers: AtomicI64::new(0),
    })))
}

fn metrics_handle() -> Option<PrometheusHandle> {
    static HANDLE: std::sync::OnceLock<Option<PrometheusHandle>> = std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| PrometheusBuilder::new().install_recorder().ok())
        .clone()
}

async fn handle_verify_email(
    job: SendVerificationEmail,
    state: Data<WorkerState>,
    attempt: Attempt,
) -> Result<(), BoxDynError> {
    if attempt.current() > 1 {
        metrics::counter!("gatehouse_jobs_retried_total", "queue" => VERIFY_EMAIL_QUEUE)
            .increment(1);
    }
    jobs::verify_email::run(&job, &state).await.map(|_| ()).map_err(|e| {
        tracing::warn!(job = %job.outbox_id, attempt = attempt.current(), error = %format!("{e:#}"), "verification email failed");
        e.into()
    })
}

async fn handle_purge(
    job: RunPurge,
    state: Data<WorkerState>,
    attempt: Attempt,
) -> Result<(), BoxDynError> {
    if attempt.current() > 1 {
        metrics::counter!("gatehouse_jobs_retried_total", "queue" => PURGE_QUEUE).increment(1);
    }
    jobs::purge::run_requested(&state, &job)
        .await
        .map(|_| ())
        .map_err(Into::into)
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

/// Run until `shutdown` resolves: stop fetching, finish in-flight jobs
/// (up to `SHUTDOWN_TIMEOUT`), then return.
pub async fn run(
    state: WorkerState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let config = state.config.clone();
    // Migrations are idempotent and serialised by an advisory lock, so the
    // worker may start before the API.
    gatehouse_shared::db::run_migrations(&config.db.database_url).await?;

    let (stop_tx, stop_rx) = watch::channel(false);
    let listener = tokio::net::TcpListener::bind(config.worker_addr).await?;
    tracing::info!(addr = %config.worker_addr, worker = %state.name, "gatehouse-worker listening");
    let app = http::router(state.clone(), metrics_handle());
    let mut http_stop = stop_rx.clone();
    let http = tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = http_stop.changed().await;
            })
            .await;
    });
    let relay = tokio::spawn(relay::run(state.clone(), stop_rx.clone()));

    // apalis needs a live connection to build its storages; wait for Redis.
    let (shutdown_tx, mut shutdown_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = shutdown_tx.send(true);
    });
    let conn = loop {
        match state.queues.redis().get().await {
            Ok(conn) => break Some(conn),
            Err(e) => {
                tracing::warn!(error = %e, "waiting for Redis");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = shutdown_rx.changed() => break None,
                }
            }
        }
    };
    if let Some(conn) = conn {
        run_monitor(&state, conn, shutdown_rx).await?;
    }
    let _ = stop_tx.send(true);
    let _ = tokio::join!(http, relay);
    tracing::info!(worker = %state.name, "gatehouse-worker stopped");
    Ok(())
}

async fn run_monitor(
    state: &WorkerState,
    conn: redis::aio::ConnectionManager,
    mut shutdown_rx: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let config = &state.config;
    let settings = state.queues.settings().clone();
    let verify_storage =
        settings.storage::<SendVerificationEmail>(conn.clone(), VERIFY_EMAIL_QUEUE);
    let purge_storage = settings.storage::<RunPurge>(conn, PURGE_QUEUE);
    let schedule = cron::Schedule::from_str(&config.purge_schedule)?;
    let backoff = ExponentialBackoffMaker::new(
        Duration::from_millis(500),
        Duration::from_secs(30),
        0.5,
        HasherRng::default(),
    )?
    .make_backoff();
    let poll = Duration::from_millis(200);
    let (name, concurrency, retries, timeout) = (
        state.name.clone(),
        config.worker_concurrency as usize,
        config.job_retries,
        config.job_timeout,
    );

    let verify = {
        let (state, name, backoff) = (state.clone(), name.clone(), backoff.clone());
        move |run: usize| {
            restart_pause(run);
            WorkerBuilder::new(format!("{name}:verify-email-r{run}"))
                .backend(verify_storage.clone().poll_with_interval(poll))
                .concurrency(concurrency)
                .retry(
                    RetryPolicy::retries(retries)
                        .with_backoff(backoff.clone())
                        .retry_if(|e: &BoxDynError| e.downcast_ref::<AbortError>().is_none()),
                )
                .timeout(timeout)
                .catch_panic()
                .data(state.clone())
                .on_event(on_event(state.clone(), VERIFY_EMAIL_QUEUE))
                .build(handle_verify_email)
        }
    };
    let purge = {
        let (state, name, backoff) = (state.clone(), name.clone(), backoff.clone());
        move |run: usize| {
            restart_pause(run);
            WorkerBuilder::new(format!("{name}:purge-r{run}"))
                .backend(purge_storage.clone().poll_with_interval(poll))
                .concurrency(1)
                .retry(
                    RetryPolicy::retries(retries)
                        .with_backoff(backoff.clone())
                        .retry_if(|e: &BoxDynError| e.downcast_ref::<AbortError>().is_none()),
                )
                .catch_panic()
                .data(state.clone())
                .on_event(on_event(state.clone(), PURGE_QUEUE))
                .build(handle_purge)
        }
    };
    let cron = {
        let (state, name) = (state.clone(), name.clone());
        move |run: usize| {
            restart_pause(run);
            WorkerBuilder::new(format!("{name}:cron-r{run}"))
                .backend(CronScheduler::new(schedule.clone()))
                .concurrency(1)
                .catch_panic()
                .data(state.clone())
                .on_event(on_event(state.clone(), "purge-schedule"))
                .build(handle_tick)
        }
    };
    Monitor::new()
        .register(verify)
        .register(purge)
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
