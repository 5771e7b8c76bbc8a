//! Liveness and readiness probes.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use example_kit::http::Health;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(live))
        .routes(routes!(ready))
}

/// Liveness probe.
///
/// 200 while the process serves HTTP. It checks no dependency.
#[utoipa::path(get, path = "/health/live", tag = "health",
    responses((status = 200, description = "Alive.", body = Health)))]
async fn live() -> Json<Health> {
    example_kit::http::live()
}

/// Readiness probe.
///
/// 200 when PostgreSQL answers and the token verifier is following
/// Gatehouse's revocation feed; 503 otherwise.
#[utoipa::path(get, path = "/health/ready", tag = "health",
    responses(
        (status = 200, description = "Ready.", body = Health),
        (status = 503, description = "PostgreSQL is down or the revocation feed is stale.", body = Health),
    ))]
async fn ready(State(state): State<AppState>) -> (StatusCode, Json<Health>) {
    let pg = tokio::time::timeout(
        std::time::Duration::from_secs(2),
        example_kit::db::ping(&state.db),
    )
    .await
    .unwrap_or(false);
    example_kit::http::ready(&[("postgres", pg), ("gatehouse", state.verifier.is_ready())])
}
