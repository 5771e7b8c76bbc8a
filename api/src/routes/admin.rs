//! `/admin/*`: purge jobs and the audit log (admins only).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use gatehouse_shared::models::{AuditAction, AuditEvent, AuditFilter, PurgeRun};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::admin;
use crate::dto::{PageOut, PageParams, page_bounds, rfc3339, rfc3339_opt};
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{AdminUser, ApiQuery, ClientIp, OptionalJson};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(request_purge))
        .routes(routes!(list_purge_runs))
        .routes(routes!(list_audit))
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
        (status = 400, description = "Malformed JSON.", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing, invalid or revoked access token.", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`forbidden`: not an admin.", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large.", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body is not JSON.", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Unknown field or wrong type.", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("oauth2" = []))
)]
async fn request_purge(
    State(state): State<AppState>,
    AdminUser(auth): AdminUser,
    ip: ClientIp,
    OptionalJson(body): OptionalJson<PurgeRequest>,
) -> ApiResult<(StatusCode, Json<PurgeAccepted>)> {
    let dry_run = body.unwrap_or_default().dry_run;
    let run_id = admin::request_purge(&state, &auth.user, dry_run, ip.text()).await?;
    Ok((StatusCode::ACCEPTED, Json(PurgeAccepted { run_id })))
}

/// One executed purge run.
#[derive(Debug, Serialize, ToSchema)]
pub struct PurgeRunOut {
    /// For a requested run, the `run_id` answered by `POST /admin/jobs/purge`.
    pub id: Uuid,
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
}

impl From<PurgeRun> for PurgeRunOut {
    fn from(r: PurgeRun) -> Self {
        Self {
            id: r.id,
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
        }
    }
}

/// List purge runs.
///
/// Every executed purge run, scheduled or requested, newest first: when it
/// was due, started and finished, its status, the rows it deleted (or would
/// delete, for a dry run) and its error. A requested run appears once a
/// worker starts it.
#[utoipa::path(
    get, path = "/admin/jobs/runs", tag = "admin",
    params(PageParams),
    responses(
        (status = 200, description = "A page of runs.", body = PageOut<PurgeRunOut>),
        (status = 401, description = "Missing, invalid or revoked access token.", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`forbidden`: not an admin.", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid `limit` or `offset`, or an unknown parameter.", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("oauth2" = []))
)]
async fn list_purge_runs(
    State(state): State<AppState>,
    _admin: AdminUser,
    ApiQuery(query): ApiQuery<PageParams>,
) -> ApiResult<Json<PageOut<PurgeRunOut>>> {
    let (limit, offset) = query.bounds()?;
    let mut conn = state.db.get().await?;
    let page = PurgeRun::list(&mut conn, limit, offset).await?;
    Ok(Json(PageOut::from_page(page, limit, offset)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Page size, 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200, default = 50)]
    pub limit: Option<i64>,
    /// Rows to skip (default 0).
    #[param(minimum = 0, default = 0)]
    pub offset: Option<i64>,
    /// Only events where this user acted or was acted upon.
    pub user_id: Option<Uuid>,
    /// Only events of this kind.
    pub action: Option<AuditAction>,
}

/// One audit record.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEventOut {
    pub id: Uuid,
    #[serde(serialize_with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub occurred_at: DateTime<Utc>,
    /// Who acted; `null` when nobody was authenticated (a failed login, a
    /// replayed refresh token).
    pub actor_id: Option<Uuid>,
    /// The user affected.
    pub subject_id: Option<Uuid>,
    #[schema(value_type = AuditAction)]
    pub action: String,
    /// Client IP address.
    pub ip: Option<String>,
    /// Event-specific facts, e.g. the changed fields with old and new role.
    /// Never a password, hash, code or token.
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
}

impl From<AuditEvent> for AuditEventOut {
    fn from(e: AuditEvent) -> Self {
        Self {
            id: e.id,
            occurred_at: e.occurred_at,
            actor_id: e.actor_id,
            subject_id: e.subject_id,
            action: e.action,
            ip: e.ip,
            details: e.details,
        }
    }
}

/// Read the audit log.
///
/// Signups, logins and failed logins, refreshes and detected refresh-token
/// reuse, logouts, email verifications and every admin change: who acted,
/// on whom, what, when and from which IP. Newest first; filter by
/// `user_id` (as actor or subject) and by `action`. Authentication events
/// are written asynchronously and may appear a moment after the request.
#[utoipa::path(
    get, path = "/admin/audit", tag = "admin",
    params(AuditQuery),
    responses(
        (status = 200, description = "A page of audit events.", body = PageOut<AuditEventOut>),
        (status = 401, description = "Missing, invalid or revoked access token.", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`forbidden`: not an admin.", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid `limit`, `offset`, `user_id` or `action`, or an unknown parameter.", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("oauth2" = []))
)]
async fn list_audit(
    State(state): State<AppState>,
    _admin: AdminUser,
    ApiQuery(query): ApiQuery<AuditQuery>,
) -> ApiResult<Json<PageOut<AuditEventOut>>> {
    let mut errors = Vec::new();
    let (limit, offset) = page_bounds(query.limit, query.offset, &mut errors);
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let filter = AuditFilter {
        user_id: query.user_id,
        action: query.action,
    };
    let mut conn = state.db.get().await?;
    let page = AuditEvent::list(&mut conn, &filter, limit, offset).await?;
    Ok(Json(PageOut::from_page(page, limit, offset)))
}
