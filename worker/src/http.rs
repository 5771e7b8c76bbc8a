//! The worker's own HTTP port: health probes and `/metrics`.

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
        .route("/health", get(ready))
        .route("/health/ready", get(ready))
        .route("/health/live", get(live))
        .route("/metrics", get(metrics_text))
        .with_state(HttpState { worker, metrics })
}

/// Liveness: the process answers. Nothing else, so a Redis or PostgreSQL
/// outage never gets every worker restarted by its orchestrator.
async fn live(State(s): State<HttpState>) -> impl IntoResponse {
    axum::Json(serde_json::json!({ "status": "ok", "worker": s.worker.name }))
}

/// Readiness (also `/health`): 200 when PostgreSQL and Redis answer and
/// every consumer and scheduled job of this process runs right now.
async fn ready(State(s): State<HttpState>) -> impl IntoResponse {
    let timeout = std::time::Duration::from_secs(2);
    let (pg, redis) = tokio::join!(
        tokio::time::timeout(timeout, gatehouse_shared::db::ping(&s.worker.db)),
        tokio::time::timeout(timeout, s.worker.queues.redis().ping()),
    );
    let pg = pg.unwrap_or(false);
    let redis = redis.unwrap_or(false);
    let (live, expected) = s.worker.workers.count();
    let running = expected > 0 && live == expected;
    let ok = pg && redis && running;
    let word = |b: bool| if b { "ok" } else { "down" };
    let body = serde_json::json!({
        "status": if ok { "ok" } else { "unavailable" },
        "worker": s.worker.name,
        "checks": { "postgres": word(pg), "redis": word(redis), "workers": word(running) },
        "live_workers": live,
        "expected_workers": expected,
        "down_workers": s.worker.workers.down(),
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
