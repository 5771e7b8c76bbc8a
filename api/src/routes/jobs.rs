//! `/admin/jobs/*`: queue a purge, list the purge runs (admins only).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use gatehouse_shared::models::PurgeRun;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::auth::AdminUser;
use crate::error::ApiResult;
use crate::http::dto::{rfc3339, rfc3339_opt};
use crate::http::extract::{ApiQuery, ClientIp, OptionalJson};
use crate::http::pagination::PageParams;
use crate::http::responses::{AdminOnly, BadInput, BadJson};
use crate::jobs;
use crate::state::AppState;

crate::page_of!(PurgeRunPage, PurgeRunOut, "A page of purge runs.");

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(request_purge))
        .routes(routes!(list_purge_runs))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PurgeRequest {
    /// Count what would be deleted without deleting anything (default false).
    #[serde(default)]
    pub dry_run: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PurgeAccepted {
    /// Id of the run the worker will record; look for it in `/admin/jobs/runs`.
    pub run_id: Uuid,
}

/// Queue a purge now.
///
/// Queues a purge of accounts left unverified past their deadline, plus
/// expired sessions and codes; a worker runs it and records the run under
/// `run_id`. With `dry_run` the run only counts. The body may be empty.
#[utoipa::path(
    post, path = "/admin/jobs/purge", tag = "admin",
    request_body(content = Option<PurgeRequest>, description = "Optional; an empty body means `dry_run: false`."),
    responses(
        (status = 202, description = "Queued.", body = PurgeAccepted),
        AdminOnly,
        BadJson,
    ),
    security(("oauth2" = []))
)]
async fn request_purge(
    State(state): State<AppState>,
    AdminUser(auth): AdminUser,
    ip: ClientIp,
    OptionalJson(body): OptionalJson<PurgeRequest>,
) -> ApiResult<(StatusCode, Json<PurgeAccepted>)> {
    let dry_run = body.unwrap_or_default().dry_run;
    let run_id = jobs::request_purge(&state, &auth.user, dry_run, ip.text()).await?;
    Ok((StatusCode::ACCEPTED, Json(PurgeAccepted { run_id })))
}

/// One executed run of a scheduled job: a purge or a key rotation.
#[derive(Debug, Serialize, ToSchema)]
pub struct PurgeRunOut {
    /// For a requested run, the `run_id` answered by `POST /admin/jobs/purge`
    /// or `POST /admin/keys/rotate`.
    pub id: Uuid,
    /// `purge` or `rotate-keys`.
    #[schema(example = "purge")]
    pub job: String,
    /// `schedule` or `manual`.
    #[schema(example = "schedule")]
    pub trigger: String,
    /// The cron tick of a scheduled run; `null` for a manual one.
    #[serde(serialize_with = "rfc3339_opt")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub scheduled_for: Option<DateTime<Utc>>,
    #[serde(serialize_with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub started_at: DateTime<Utc>,
    /// `null` while running.
    #[serde(serialize_with = "rfc3339_opt")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub finished_at: Option<DateTime<Utc>>,
    /// `running`, `succeeded` or `failed`.
    #[schema(example = "succeeded")]
    pub status: String,
    /// A dry run deletes nothing; its counts are what it would delete.
    pub dry_run: bool,
    pub users_deleted: i64,
    pub sessions_deleted: i64,
    pub codes_deleted: i64,
    /// Why a failed run failed.
    pub error: Option<String>,
    /// Name of the worker process that ran it.
    pub worker: String,
    /// The admin who requested a manual run.
    pub requested_by: Option<Uuid>,
    /// What a `rotate-keys` run did (`outcome`: `rotated` or `waiting`, and
    /// the kids); `null` for a purge, whose counts are above.
    #[schema(value_type = Option<Object>)]
    pub details: Option<serde_json::Value>,
}

impl From<PurgeRun> for PurgeRunOut {
    fn from(r: PurgeRun) -> Self {
        Self {
            id: r.id,
            job: r.job,
            trigger: r.trigger,
            scheduled_for: r.scheduled_for,
            started_at: r.started_at,
            finished_at: r.finished_at,
            status: r.status,
            dry_run: r.dry_run,
            users_deleted: r.users_deleted,
            sessions_deleted: r.sessions_deleted,
            codes_deleted: r.codes_deleted,
            error: r.error,
            worker: r.worker,
            requested_by: r.requested_by,
            details: r.details,
        }
    }
}

/// List job runs.
///
/// Every executed run of a scheduled job (`purge`, `rotate-keys`),
/// scheduled or requested, newest first: when it was due, started and
/// finished, its status, the rows a purge deleted (or would delete, for a
/// dry run), what a rotation did, and the error. A requested purge appears
/// once a worker starts it.
#[utoipa::path(
    get, path = "/admin/jobs/runs", tag = "admin",
    params(PageParams),
    responses(
        (status = 200, description = "A page of runs.", body = PurgeRunPage),
        AdminOnly,
        BadInput,
    ),
    security(("oauth2" = []))
)]
async fn list_purge_runs(
    State(state): State<AppState>,
    _admin: AdminUser,
    ApiQuery(query): ApiQuery<PageParams>,
) -> ApiResult<Json<PurgeRunPage>> {
    let page = query.validate()?;
    let runs = jobs::list_runs(&state, page).await?;
    Ok(Json(PurgeRunPage::new(runs, page)))
}
