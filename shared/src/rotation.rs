//! Key rotation as a scheduled job: the worker calls [`run_scheduled`] on
//! every `KEY_ROTATION_SCHEDULE` tick. Exactly one worker runs each tick,
//! through the same mechanism as the purge: the `job_runs` row keyed on
//! (`rotate-keys`, tick) that only one insert can create. The run records
//! what the step did in `details`.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::db::DbPool;
use crate::keys::{KeySealer, KeyTiming};
use crate::models::job_run::{JobRun, ROTATE_KEYS_JOB, Trigger};
use crate::models::signing_key::{Rotation, SigningKey};

/// Label values of `gatehouse_key_rotations_total`.
pub const TRIGGERS: [&str; 2] = ["schedule", "manual"];
pub const OUTCOMES: [&str; 3] = ["rotated", "waiting", "failed"];

/// Start every rotation counter at 0, so alerts work from the first scrape.
pub fn init_metrics() {
    for trigger in TRIGGERS {
        for outcome in OUTCOMES {
            metrics::counter!("gatehouse_key_rotations_total", "trigger" => trigger, "outcome" => outcome)
                .absolute(0);
        }
    }
}

/// Count one rotation step.
pub fn count(trigger: &'static str, result: Result<&Rotation, ()>) {
    let outcome = match result {
        Ok(Rotation::Rotated { .. }) => "rotated",
        Ok(Rotation::Waiting { .. }) => "waiting",
        Err(()) => "failed",
    };
    metrics::counter!("gatehouse_key_rotations_total", "trigger" => trigger, "outcome" => outcome)
        .increment(1);
}

/// Run the rotation of `tick` unless another worker has claimed it
/// (`Ok(None)`). A rotation that has to wait for the next key's
/// publication is a successful run whose details say so.
pub async fn run_scheduled(
    db: &DbPool,
    sealer: &KeySealer,
    timing: &KeyTiming,
    worker: &str,
    tick: DateTime<Utc>,
) -> anyhow::Result<Option<Rotation>> {
    let run = JobRun::start(
        ROTATE_KEYS_JOB,
        Trigger::Schedule(tick),
        worker,
        Uuid::now_v7(),
    );
    let mut conn = db.get().await?;
    if !run.claim(&mut conn).await? {
        tracing::debug!(%tick, "key rotation tick already claimed elsewhere; skipping");
        return Ok(None);
    }
    let result = SigningKey::rotate(&mut conn, sealer, timing, Utc::now()).await;
    let (details, error) = match &result {
        Ok(rotation) => (serde_json::to_value(rotation).ok(), None),
        Err(e) => (None, Some(format!("{e:#}"))),
    };
    JobRun::finish_with_details(&mut conn, run.id, details, error.as_deref()).await?;
    count("schedule", result.as_ref().map_err(|_| ()));
    match &result {
        Ok(rotation) => tracing::info!(run = %run.id, ?rotation, "key rotation run finished"),
        Err(e) => tracing::error!(run = %run.id, error = %e, "key rotation run failed"),
    }
    Ok(Some(result?))
}

/// Set `gatehouse_signing_key_age_seconds` from the current key (logged,
/// not returned, on failure: a gauge is not worth failing a run for).
pub async fn observe_key_age(db: &DbPool) {
    let current = async {
        let mut conn = db.get().await?;
        let keys = SigningKey::unretired(&mut conn).await?;
        anyhow::Ok(
            keys.into_iter()
                .find(|k| k.key_state() == Some(crate::models::signing_key::KeyState::Current))
                .and_then(|k| k.activated_at),
        )
    };
    match current.await {
        Ok(Some(since)) => metrics::gauge!("gatehouse_signing_key_age_seconds")
            .set((Utc::now() - since).num_milliseconds() as f64 / 1000.0),
        Ok(None) => {}
        Err(e) => tracing::warn!(error = %format!("{e:#}"), "signing key age not read"),
    }
}
