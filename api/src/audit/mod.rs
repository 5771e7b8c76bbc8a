//! The audit log (`/admin/audit`): reading it. Events are written by the
//! use cases: admin changes in their own transaction, authentication
//! events through the asynchronous [`AuditWriter`].

pub mod writer;

use gatehouse_shared::models::{AuditEvent, AuditFilter, Page, PageRequest};

pub use writer::AuditWriter;

use crate::error::ApiResult;
use crate::state::AppState;

/// Events matching `filter`, newest first.
pub async fn list(
    state: &AppState,
    filter: &AuditFilter,
    page: PageRequest,
) -> ApiResult<Page<AuditEvent>> {
    let mut conn = state.db.get().await?;
    Ok(AuditEvent::list(&mut conn, filter, page).await?)
}
