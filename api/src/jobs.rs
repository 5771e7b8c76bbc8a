//! Jobs an admin drives (`/admin/jobs`): queue a purge, list the runs.

use diesel_async::AsyncConnection;
use gatehouse_shared::jobs::{self, RunPurge};
use gatehouse_shared::models::{AuditAction, AuditEvent, Page, PageRequest, PurgeRun, User};
use serde_json::json;
use uuid::Uuid;

use crate::error::ApiResult;
use crate::state::AppState;

/// Queue a purge run through the outbox, with its audit event in the same
/// transaction; its id is the id of the run the worker will record.
pub async fn request_purge(
    state: &AppState,
    actor: &User,
    dry_run: bool,
    ip: Option<String>,
) -> ApiResult<Uuid> {
    let mut conn = state.db.get().await?;
    let entry = conn
        .transaction::<_, diesel::result::Error, _>(async |conn| {
            let entry = jobs::enqueue(conn, &RunPurge::new(dry_run, Some(actor.id))).await?;
            AuditEvent::new(AuditAction::PurgeRequested)
                .actor(actor.id)
                .ip(ip)
                .details(json!({"run_id": entry.id, "dry_run": dry_run}))
                .insert(conn)
                .await?;
            Ok(entry)
        })
        .await?;
    let run_id = entry.id;
    state.dispatch(vec![entry]);
    Ok(run_id)
}

/// Executed purge runs, newest first.
pub async fn list_runs(state: &AppState, page: PageRequest) -> ApiResult<Page<PurgeRun>> {
    let mut conn = state.db.get().await?;
    Ok(PurgeRun::list(&mut conn, page).await?)
}
