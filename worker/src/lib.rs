//! Gatehouse worker: consumes the Redis queues (verification emails,
//! on-demand purges), fires the scheduled purge, relays the outbox, and
//! serves `/health` and `/metrics`.

pub mod config;
pub mod http;
pub mod jobs;
pub mod mailer;
pub mod meters;
pub mod monitor;
pub mod relay;
pub mod state;

use std::sync::Arc;
use std::time::Duration;

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
    let secrets = gatehouse_shared::keys::SecretHasher::new(config.tokens.jwt_secret.bytes());
    Ok(WorkerState(Arc::new(Inner {
        config,
        db,
        queues,
        mailer,
        name,
        workers: state::Workers::default(),
        secrets,
    })))
}

fn metrics_handle() -> Option<PrometheusHandle> {
    static HANDLE: std::sync::OnceLock<Option<PrometheusHandle>> = std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| PrometheusBuilder::new().install_recorder().ok())
        .clone()
}

/// Run until `shutdown` resolves: stop fetching, finish in-flight jobs
/// (up to `SHUTDOWN_TIMEOUT`), then return.
pub async fn serve(
    state: WorkerState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let config = state.config.clone();
    // Migrations are idempotent and serialised by an advisory lock, so the
    // worker may start before the API.
    gatehouse_shared::db::run_migrations(&config.db.database_url).await?;
    // The first signing keys, if the API has not created them yet (same
    // lock); a JWT_SECRET that does not open them stops the worker here.
    {
        let sealer = gatehouse_shared::keys::KeySealer::new(config.tokens.jwt_secret.bytes());
        let mut conn = state.db.get().await?;
        gatehouse_shared::models::SigningKey::ensure(&mut conn, &sealer).await?;
    }
    let _ = metrics_handle();
    meters::init();
    gatehouse_shared::rotation::observe_key_age(&state.db).await;

    // One signal for everything: the HTTP port, the relay, the consumers
    // and the scheduled jobs.
    let (stop_tx, stop_rx) = watch::channel(false);
    let listener = tokio::net::TcpListener::bind(config.worker_addr).await?;
    tracing::info!(addr = %config.worker_addr, worker = %state.name, "gatehouse-worker listening");
    let app = http::router(state.clone(), metrics_handle());
    let mut http_stop = stop_rx.clone();
    let http = tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = http_stop.wait_for(|stop| *stop).await;
            })
            .await;
    });
    let relay = tokio::spawn(relay::sweep_until_shutdown(state.clone(), stop_rx.clone()));
    let signal = tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    // Consumers wait for Redis on their own; scheduled jobs do not need it.
    let result = monitor::run(&state, stop_rx).await;
    // `monitor::run` returns within SHUTDOWN_TIMEOUT of the signal; the
    // relay and the HTTP port get a short grace on top, never more, whatever
    // Redis does (a sweep can be waiting on it).
    signal.abort();
    let grace = Duration::from_secs(2);
    let _ = tokio::time::timeout(grace, async {
        let _ = tokio::join!(http, relay);
    })
    .await;
    tracing::info!(worker = %state.name, "gatehouse-worker stopped");
    result
}
