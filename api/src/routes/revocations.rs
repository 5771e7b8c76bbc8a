//! `GET /.well-known/revocations`: the revocation feed apps follow.

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use gatehouse_shared::models::Revocation;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::error::{ApiError, ApiResult, FieldError};
use crate::http::extract::ApiQuery;
use crate::http::responses::BadInput;
use crate::state::AppState;

pub const DEFAULT_LIMIT: i64 = 1000;
pub const MAX_LIMIT: i64 = 10_000;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_revocations))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct FeedQuery {
    /// Only entries after this cursor (the `next_cursor` of the previous
    /// answer). Without it: every entry kept, from the oldest.
    #[param(minimum = 0)]
    pub since: Option<i64>,
    /// Most entries in one answer, 1 to 10000 (default 1000).
    #[param(minimum = 1, maximum = 10000, default = 1000)]
    pub limit: Option<i64>,
}

/// One entry: access tokens of session `sid` with `iat < not_before` are dead.
#[derive(Debug, Serialize, ToSchema)]
pub struct RevocationOut {
    /// Position in the feed; increases in commit order.
    pub cursor: i64,
    /// The session (`sid` claim).
    pub sid: Uuid,
    /// Epoch seconds, like `iat`.
    #[schema(example = 1764460800)]
    pub not_before: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FeedOut {
    /// Oldest first.
    pub items: Vec<RevocationOut>,
    /// Send as `since` next time: the last item's cursor, or `since` (the
    /// newest cursor without it) when there is nothing new.
    pub next_cursor: i64,
    /// More entries follow at once: ask again with `since=next_cursor`.
    pub has_more: bool,
}

/// Revocation feed.
///
/// Every change that makes access tokens stale: logout, session revocation,
/// refresh-token reuse, password change or reset, role or email change,
/// disabling, deletion. An access token whose `sid` matches an entry and
/// whose `iat` is before the entry's `not_before` is dead; keep the largest
/// `not_before` per `sid`. Entries are kept at least one access-token
/// lifetime. Follow it with `since` (each answer's `next_cursor`); the same
/// entries are published at once on Redis (`{REDIS_NAMESPACE}:revocations`).
#[utoipa::path(
    get, path = "/.well-known/revocations", tag = "discovery",
    params(FeedQuery),
    responses(
        (status = 200, description = "Entries after `since`. `Cache-Control: no-store`.", body = FeedOut),
        BadInput,
    )
)]
async fn list_revocations(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<FeedQuery>,
) -> ApiResult<impl IntoResponse> {
    let mut errors = Vec::new();
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        errors.push(FieldError::new(
            "limit",
            "out_of_range",
            format!("limit must be between 1 and {MAX_LIMIT}"),
        ));
    }
    if query.since.is_some_and(|s| s < 0) {
        errors.push(FieldError::new(
            "since",
            "out_of_range",
            "since must be 0 or more",
        ));
    }
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let mut conn = state.db.get().await?;
    // One more than asked tells whether more follow.
    let mut items = Revocation::page(&mut conn, query.since, limit + 1).await?;
    let has_more = items.len() as i64 > limit;
    items.truncate(limit as usize);
    let next_cursor = match (items.last(), query.since) {
        (Some(last), _) => last.cursor,
        (None, Some(since)) => since,
        (None, None) => Revocation::last_cursor(&mut conn).await?,
    };
    let body = FeedOut {
        items: items
            .into_iter()
            .map(|r| RevocationOut {
                cursor: r.cursor,
                sid: r.sid,
                not_before: r.not_before,
            })
            .collect(),
        next_cursor,
        has_more,
    };
    Ok(([(header::CACHE_CONTROL, "no-store")], Json(body)))
}
