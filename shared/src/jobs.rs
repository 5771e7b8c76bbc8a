//! Job payloads and queue names. The API produces, the worker consumes.
//!
//! Jobs carry ids, not data: the worker re-reads the rows and finishes quietly
//! when they are gone. Each payload has a `v` field so a future change can be
//! rolled out while old jobs are still queued.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Queue of verification emails (signup and resend).
pub const VERIFY_EMAIL_QUEUE: &str = "verify-email";
/// Queue of on-demand purge runs.
pub const PURGE_QUEUE: &str = "purge";

/// The Redis queue name under a namespace, e.g. `gatehouse:verify-email`.
/// Queue names are explicit so renaming a Rust type never strands jobs.
pub fn queue_name(namespace: &str, queue: &str) -> String {
    format!("{namespace}:{queue}")
}

fn v1() -> u16 {
    1
}

/// Create a fresh code and link for a user and email them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendVerificationEmail {
    #[serde(default = "v1")]
    pub v: u16,
    /// The outbox row this job was relayed from (idempotency key).
    pub outbox_id: Uuid,
    pub user_id: Uuid,
    pub requested_at: DateTime<Utc>,
}

/// Run the purge now (admin request).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunPurge {
    #[serde(default = "v1")]
    pub v: u16,
    /// The outbox row; also the id of the recorded run.
    pub outbox_id: Uuid,
    pub dry_run: bool,
    pub requested_by: Option<Uuid>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_without_version_default_to_v1() {
        let id = Uuid::nil();
        let json = serde_json::json!({
            "outbox_id": id, "user_id": id, "requested_at": "2026-01-01T00:00:00Z"
        });
        let job: SendVerificationEmail = serde_json::from_value(json).expect("parse");
        assert_eq!(job.v, 1);
        assert_eq!(queue_name("gh", VERIFY_EMAIL_QUEUE), "gh:verify-email");
    }
}

/// Outbox rows for each job. The payload embeds the outbox id, which is the
/// job's idempotency key.
pub mod outbox {
    use chrono::Utc;
    use uuid::Uuid;

    use super::*;
    use crate::models::outbox::NewOutboxEntry;

    pub fn send_verification(user_id: Uuid) -> NewOutboxEntry {
        let id = Uuid::now_v7();
        let now = Utc::now();
        let job = SendVerificationEmail {
            v: 1,
            outbox_id: id,
            user_id,
            requested_at: now,
        };
        NewOutboxEntry {
            id,
            queue: VERIFY_EMAIL_QUEUE.into(),
            payload: serde_json::to_value(job).unwrap_or_default(),
            user_id: Some(user_id),
            created_at: now,
        }
    }

    pub fn run_purge(dry_run: bool, requested_by: Option<Uuid>) -> NewOutboxEntry {
        let id = Uuid::now_v7();
        let job = RunPurge {
            v: 1,
            outbox_id: id,
            dry_run,
            requested_by,
        };
        NewOutboxEntry {
            id,
            queue: PURGE_QUEUE.into(),
            payload: serde_json::to_value(job).unwrap_or_default(),
            user_id: requested_by,
            created_at: Utc::now(),
        }
    }
}
