//! The worker's own HTTP port: `/health` and `/metrics`.

use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::state::WorkerState;

#[derive(Clone)]
struct HttpState {
    worker: WorkerState,
    metrics: Option<PrometheusHandle>,
}

pub fn router(worker: WorkerState, metrics: Option<PrometheusHandle>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics_text))
        .with_state(HttpState { worker, metrics })
}

/// 200 when Postgres and Redis answer and every apalis worker runs.
async fn health(State(s): State<HttpState>) -> impl IntoResponse {
    let timeout = std::time::Duration::from_secs(2);
    let (pg, redis) = tokio::join!(
        tokio::time::timeout(timeout, gatehouse_shared::db::ping(&s.worker.db)),
        tokio::time::timeout(timeout, s.worker.queues.redis().ping()),
    );
    let pg = pg.unwrap_or(false);
    let redis = redis.unwrap_or(false);
    let live = s.worker.live_workers.load(Ordering::Relaxed);
    let running = live >= crate::monitor::expected_workers();
    let ok = pg && redis && running;
    let word = |b: bool| if b { "ok" } else { "down" };
    let body = serde_json::json!({
        "status": if ok { "ok" } else { "unavailable" },
        "worker": s.worker.name,
        "checks": { "postgres": word(pg), "redis": word(redis), "workers": word(running) },
        "live_workers": live,
    });
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body))
}

async fn metrics_text(State(s): State<HttpState>) -> impl IntoResponse {
    let body = s.metrics.map(|h| h.render()).unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body)
}
