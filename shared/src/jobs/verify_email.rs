//! `SendVerificationEmail`: signup and resend.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Job, v1};

/// Create a fresh code and link for a user and email them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendVerificationEmail {
    #[serde(default = "v1")]
    pub v: u16,
    /// The outbox row this job was relayed from (idempotency key).
    pub outbox_id: Uuid,
    pub user_id: Uuid,
    /// A newer request supersedes an older one still queued.
    pub requested_at: DateTime<Utc>,
}

impl SendVerificationEmail {
    pub fn new(user_id: Uuid) -> Self {
        Self {
            v: Self::VERSION,
            outbox_id: Uuid::now_v7(),
            user_id,
            requested_at: Utc::now(),
        }
    }
}

impl Job for SendVerificationEmail {
    const QUEUE: &'static str = "verify-email";
    const VERSION: u16 = 1;

    fn outbox_id(&self) -> Uuid {
        self.outbox_id
    }

    fn version(&self) -> u16 {
        self.v
    }

    fn requested_at(&self) -> Option<DateTime<Utc>> {
        Some(self.requested_at)
    }

    fn user_id(&self) -> Option<Uuid> {
        Some(self.user_id)
    }
}
