//! Liveness and readiness probes.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::http::responses::TimedOut;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(live))
        .routes(routes!(ready))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok` or `unavailable`.
    pub status: &'static str,
    /// Each dependency: `ok` or `down`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checks: Option<Checks>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Checks {
    pub postgres: &'static str,
    pub redis: &'static str,
}

/// Liveness probe.
///
/// 200 while the process serves HTTP. It checks no dependency.
#[utoipa::path(get, path = "/health/live", tag = "health",
    responses((status = 200, description = "Alive.", body = Health), TimedOut))]
async fn live() -> Json<Health> {
    Json(Health {
        status: "ok",
        checks: None,
    })
}

/// Readiness probe.
///
/// 200 when PostgreSQL and Redis both answer, 503 otherwise.
#[utoipa::path(get, path = "/health/ready", tag = "health",
    responses(
        (status = 200, description = "Ready.", body = Health),
        (status = 503, description = "PostgreSQL or Redis is down.", body = Health),
        TimedOut,
    ))]
async fn ready(State(state): State<AppState>) -> (StatusCode, Json<Health>) {
    let (pg, redis) = tokio::join!(
        tokio::time::timeout(
            std::time::Duration::from_secs(2),
            gatehouse_shared::db::ping(&state.db)
        ),
        tokio::time::timeout(
            std::time::Duration::from_secs(2),
            state.queues.redis().ping()
        ),
    );
    let pg = pg.unwrap_or(false);
    let redis = redis.unwrap_or(false);
    let word = |ok: bool| if ok { "ok" } else { "down" };
    let checks = Some(Checks {
        postgres: word(pg),
        redis: word(redis),
    });
    if pg && redis {
        (
            StatusCode::OK,
            Json(Health {
                status: "ok",
                checks,
            }),
        )
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Health {
                status: "unavailable",
                checks,
            }),
        )
    }
}
