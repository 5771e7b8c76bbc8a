//! Signing-key administration (`/admin/keys`): list the keys, rotate now.
//! Both write their audit event in the same transaction as what they do.

use chrono::Utc;
use diesel_async::AsyncConnection;
use gatehouse_shared::models::job_run::{JobRun, ROTATE_KEYS_JOB, Trigger};
use gatehouse_shared::models::signing_key::{KeyStoreError, Rotation};
use gatehouse_shared::models::{AuditAction, AuditEvent, Page, PageRequest, SigningKey, User};
use serde_json::json;
use uuid::Uuid;

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// Every key, newest first; the read is audited.
pub async fn list(
    state: &AppState,
    actor: &User,
    page: PageRequest,
    ip: Option<String>,
) -> ApiResult<Page<SigningKey>> {
    let mut conn = state.db.get().await?;
    conn.transaction::<_, ApiError, _>(async |conn| {
        AuditEvent::new(AuditAction::KeysListed)
            .actor(actor.id)
            .ip(ip)
            .insert(conn)
            .await?;
        Ok(SigningKey::list(conn, page.limit, page.offset).await?)
    })
    .await
}

/// Why a rotation could not happen now.
fn too_soon(usable_from: chrono::DateTime<Utc>) -> ApiError {
    let wait = (usable_from - Utc::now()).num_seconds().max(1);
    let mut e = ApiError::conflict(
        "rotation_too_soon",
        format!(
            "The next key has not been published for one JWKS cache period yet; retry in {wait} s."
        ),
    );
    e.retry_after = Some(u64::try_from(wait).unwrap_or(1));
    e
}

/// Rotate now: the next key signs, the current one becomes previous, a new
/// next key is published. Recorded as a manual `rotate-keys` run with its
/// audit event, all in one transaction; this replica switches at once, the
/// others within `KEY_REFRESH_INTERVAL`.
pub async fn rotate(
    state: &AppState,
    actor: &User,
    ip: Option<String>,
) -> ApiResult<(Uuid, Rotation)> {
    let ring = state.tokens.ring();
    let mut conn = state.db.get().await?;
    let run_id = Uuid::now_v7();
    let result = conn
        .transaction::<_, ApiError, _>(async |conn| {
            let rotation = SigningKey::rotate(conn, ring.sealer(), ring.timing(), Utc::now())
                .await
                .map_err(|e| match e {
                    KeyStoreError::Db(e) => ApiError::from(e),
                    KeyStoreError::Key(e) => ApiError::internal(e),
                })?;
            if let Rotation::Waiting { usable_from, .. } = rotation {
                return Err(too_soon(usable_from));
            }
            let mut run = JobRun::start(
                ROTATE_KEYS_JOB,
                Trigger::Manual {
                    requested_by: Some(actor.id),
                },
                "api",
                run_id,
            );
            run.status = "succeeded".into();
            run.finished_at = Some(Utc::now());
            run.details = serde_json::to_value(&rotation).ok();
            run.claim(conn).await?;
            AuditEvent::new(AuditAction::KeysRotated)
                .actor(actor.id)
                .ip(ip)
                .details(json!({"run_id": run_id, "rotation": rotation}))
                .insert(conn)
                .await?;
            Ok(rotation)
        })
        .await;
    gatehouse_shared::rotation::count("manual", result.as_ref().map_err(|_| ()));
    let rotation = result?;
    if let Err(e) = ring.reload(&state.db).await {
        // The periodic reload picks it up; the rotation itself committed.
        tracing::warn!(error = %format!("{e:#}"), "signing keys not reloaded after rotation");
    }
    tracing::info!(run = %run_id, ?rotation, "signing keys rotated by an admin");
    Ok((run_id, rotation))
}
