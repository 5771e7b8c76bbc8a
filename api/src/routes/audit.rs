//! `/admin/audit`: the audit log (admins only).

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use gatehouse_shared::models::{AuditAction, AuditEvent, AuditFilter};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::audit;
use crate::auth::AdminUser;
use crate::error::ApiResult;
use crate::http::dto::rfc3339;
use crate::http::pagination::{PageParams, Paged};
use crate::http::responses::{AdminOnly, BadInput};
use crate::state::AppState;

crate::page_of!(AuditEventPage, AuditEventOut, "A page of audit events.");

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_audit))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
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
    params(PageParams, AuditQuery),
    responses(
        (status = 200, description = "A page of audit events.", body = AuditEventPage),
        AdminOnly,
        BadInput,
    ),
    security(("oauth2" = []))
)]
async fn list_audit(
    State(state): State<AppState>,
    _admin: AdminUser,
    Paged { page, filter }: Paged<AuditQuery>,
) -> ApiResult<Json<AuditEventPage>> {
    let page = page.validate()?;
    let filter = AuditFilter {
        user_id: filter.user_id,
        action: filter.action,
    };
    let events = audit::list(&state, &filter, page).await?;
    Ok(Json(AuditEventPage::new(events, page)))
}
