//! HTTP routes: the page, the socket, the history and the probes.

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use example_kit::extract::ApiQuery;
use example_kit::http::Health;
use example_kit::{AppError, AppResult, FieldError};
use gatehouse_verify::Verified;
use serde::{Deserialize, Serialize};

use crate::auth::Caller;
use crate::messages::{Message, MessageOut, valid_room};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(crate::page::index))
        .route("/app.js", get(crate::page::script))
        .route("/style.css", get(crate::page::style))
        .route("/ws", get(crate::ws::upgrade))
        .route("/rooms/{room}/messages", get(history))
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
        .route(
            "/metrics",
            get(example_kit::gatehouse::metrics_with_verifier),
        )
}

const HISTORY_DEFAULT: i64 = 50;
const HISTORY_MAX: i64 = 200;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    /// Only messages with a smaller id (the oldest id of the page you have).
    before: Option<i64>,
    /// 1 to 200, default 50.
    limit: Option<i64>,
}

#[derive(Debug, Serialize)]
pub struct HistoryOut {
    /// Newest first.
    pub items: Vec<MessageOut>,
}

/// `GET /rooms/{room}/messages?before=<id>&limit=`: a room's history,
/// newest first (authenticated).
async fn history(
    State(state): State<AppState>,
    Verified(_caller): Verified<Caller>,
    Path(room): Path<String>,
    ApiQuery(query): ApiQuery<HistoryQuery>,
) -> AppResult<Json<HistoryOut>> {
    let mut errors = Vec::new();
    if !valid_room(&room) {
        errors.push(FieldError::new(
            "room",
            "invalid_room",
            "room must be 1 to 64 of a-z, 0-9, _ and -",
        ));
    }
    let limit = query.limit.unwrap_or(HISTORY_DEFAULT);
    if !(1..=HISTORY_MAX).contains(&limit) {
        errors.push(FieldError::new(
            "limit",
            "out_of_range",
            format!("limit must be between 1 and {HISTORY_MAX}"),
        ));
    }
    if query.before.is_some_and(|b| b < 1) {
        errors.push(FieldError::new(
            "before",
            "out_of_range",
            "before must be a message id (1 or more)",
        ));
    }
    if !errors.is_empty() {
        return Err(AppError::validation(errors));
    }
    let mut conn = state.db.get().await?;
    let items = Message::history(&mut conn, &room, query.before, limit).await?;
    Ok(Json(HistoryOut {
        items: items.into_iter().map(MessageOut::from).collect(),
    }))
}

async fn live() -> Json<Health> {
    example_kit::http::live()
}

/// 200 when PostgreSQL answers, the fan-out subscription is up and the token
/// verifier follows Gatehouse's revocation feed; 503 otherwise (also while
/// shutting down, so load balancers stop sending new sockets).
async fn ready(State(state): State<AppState>) -> (StatusCode, Json<Health>) {
    let pg = tokio::time::timeout(
        std::time::Duration::from_secs(2),
        example_kit::db::ping(&state.db),
    )
    .await
    .unwrap_or(false);
    example_kit::http::ready(&[
        ("postgres", pg),
        ("redis", state.fanout.is_subscribed()),
        ("gatehouse", state.verifier.is_ready()),
        ("accepting", !state.shutting_down()),
    ])
}
