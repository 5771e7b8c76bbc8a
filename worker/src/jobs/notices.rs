//! Shared by the lifecycle email handlers: the redelivery check and the
//! completion of the outbox row.

use gatehouse_shared::models::OutboxEntry;
use uuid::Uuid;

use super::verify_email::Outcome;
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

/// Send `email` at most once per outbox entry: a redelivery of a completed
/// entry sends nothing, and the entry is completed once `email` succeeds
/// (`email` is an async block: it does not start until the check passed).
pub(crate) async fn once(
    state: &WorkerState,
    outbox_id: Uuid,
    email: impl Future<Output = anyhow::Result<Outcome>>,
) -> anyhow::Result<Outcome> {
    if already_done(state, outbox_id).await? {
        return Ok(Outcome::AlreadySent);
    }
    let outcome = email.await?;
    complete(state, outbox_id).await?;
    Ok(outcome)
}
