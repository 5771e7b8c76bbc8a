//! Shared by the lifecycle email handlers: the redelivery check and the
//! completion of the outbox row.

use gatehouse_shared::models::OutboxEntry;
use uuid::Uuid;

use crate::state::WorkerState;

/// True when this job's outbox row is already complete: a redelivery of
/// an email that went out, so it sends nothing (idempotent per entry).
pub(crate) async fn already_done(state: &WorkerState, outbox_id: Uuid) -> anyhow::Result<bool> {
    let mut conn = state.db.get().await?;
    Ok(OutboxEntry::find(&mut conn, outbox_id)
        .await?
        .is_some_and(|e| e.completed_at.is_some()))
}

pub(crate) async fn complete(state: &WorkerState, outbox_id: Uuid) -> anyhow::Result<()> {
    let mut conn = state.db.get().await?;
    OutboxEntry::mark_completed(&mut conn, outbox_id).await?;
    Ok(())
}
